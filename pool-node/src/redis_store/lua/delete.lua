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
if mode ~= 'any' then
  local found = load_all(k, ids, now)
  for i = 1, n do
    local m = found[i]
    if m then
      local claimed = is_claimed(m, now)
      if (claimed and not claims[m.ci]) or (mode == 'own' and not claimed) then
        return ids[i]
      end
    end
  end
end
forget(k, ids)
return ''
