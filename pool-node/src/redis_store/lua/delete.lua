-- Deletes messages, all or none, following the claim rules.
-- KEYS: queue (1..8). ARGV: mode, number of ids n, n ids, claim ids...
-- mode 'any': claims do not matter; 'held': a claimed message must be held
-- by one of the claim ids; 'own': every message must be held by one of them.
-- Returns '' when done, else the id of a message the rule refuses (nothing is deleted then).
local k = queue_keys(1)
local mode, n = ARGV[1], tonumber(ARGV[2])
local ids, claims = {}, {}
for i = 3, 2 + n do ids[#ids + 1] = ARGV[i] end
for i = 3 + n, #ARGV do claims[ARGV[i]] = true end
local now = now_ms()
if mode == 'any' then
  forget(k, ids)
  return ''
end
local found = load_all(k, ids, now)
local held, others = {}, {}
for i = 1, n do
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
