-- Deletes messages, all or none, following the claim rules.
-- KEYS: queue (1..5). ARGV: message prefix, mode, number of ids n, n ids, claim ids...
-- mode 'any': claims do not matter; 'held': a claimed message must be held
-- by one of the claim ids; 'own': every message must be held by one of them.
-- Returns '' when done, else the id of a message the rule refuses (nothing is deleted then).
local k = queue_keys(1)
local prefix, mode, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local claims = {}
for i = 4 + n, #ARGV do claims[ARGV[i]] = true end
local now = now_ms()
if mode ~= 'any' then
  for i = 4, 3 + n do
    local m = load(prefix .. ARGV[i], now)
    if m then
      local claimed = is_claimed(m, now)
      if (claimed and not claims[m.ci]) or (mode == 'own' and not claimed) then
        return ARGV[i]
      end
    end
  end
end
for i = 4, 3 + n do
  redis.call('DEL', prefix .. ARGV[i])
  unindex(k, ARGV[i])
end
return ''
