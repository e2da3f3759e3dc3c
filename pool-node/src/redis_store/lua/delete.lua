-- Deletes messages in groups, each group all or none following its claim rules;
-- the groups of several deletes go in one call (group commit), one after the other.
-- KEYS: queue (1..8). ARGV: per group: mode, number of ids n, number of claim
-- ids c, n ids, c claim ids.
-- mode 'any': claims do not matter; 'held': a claimed message must be held
-- by one of the claim ids; 'own': every message must be held by one of them.
-- Returns per group '' when done, else the id of a message the rule refuses
-- (nothing of that group is deleted then).
local k = queue_keys(1)
local now = now_ms()

local function delete_group(mode, ids, claims)
  if mode == 'any' then
    forget(k, ids)
    return ''
  end
  local found = load_all(k, ids, now)
  local held, others = {}, {}
  for i = 1, #ids do
    local m = found[i]
    local claimed = m and is_claimed(m, now)
    if m and ((claimed and not claims[m.ci]) or (mode == 'own' and not claimed)) then
      return ids[i]
    end
    if claimed then held[#held + 1] = ids[i] else others[#others + 1] = ids[i] end
  end
  forget_held(k, held)
  forget(k, others)
  return ''
end

local refused = {}
local i = 1
while i <= #ARGV do
  local mode, n, c = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local ids, claims = {}, {}
  for j = i + 3, i + 2 + n do ids[#ids + 1] = ARGV[j] end
  for j = i + 3 + n, i + 2 + n + c do claims[ARGV[j]] = true end
  refused[#refused + 1] = delete_group(mode, ids, claims)
  i = i + 3 + n + c
end
return refused
