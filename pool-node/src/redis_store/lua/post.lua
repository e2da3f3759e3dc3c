-- Appends messages to a queue, creating its record if needed.
-- KEYS: queue (1..5). ARGV: message prefix, client id, then per message:
-- id, ttl s, delay s, body, checksum.
local k = queue_keys(1)
local prefix, client = ARGV[1], ARGV[2]
local now = now_ms()
redis.call('HSETNX', k.q, 'meta', '{}')
for i = 3, #ARGV, 5 do
  local id, ttl, delay = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local mkey = prefix .. id
  local e = now + ttl * 1000
  local d = 0
  if delay > 0 then d = now + delay * 1000 end
  redis.call('HSET', mkey, 'b', ARGV[i + 3], 'h', ARGV[i + 4], 'c', now, 'e', e, 'd', d, 'k', client,
             't', ttl, 'ci', '', 'ce', 0, 'n', 0)
  redis.call('PEXPIREAT', mkey, e)
  index(k, id, e, d, now)
end
return now
