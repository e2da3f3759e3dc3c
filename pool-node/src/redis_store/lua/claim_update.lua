-- Renews a live claim: it expires ttl from now, its messages live at least ttl + grace.
-- KEYS: claim hash, queue (2..6). ARGV: message prefix, claim id, ttl s, grace s.
-- Returns 1, or 0 when there is no live claim.
local ckey, k = KEYS[1], queue_keys(2)
local prefix, cid, ttl, grace = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local f = redis.call('HMGET', ckey, 'e', 'ids')
local now = now_ms()
if not f[1] or tonumber(f[1]) <= now then return 0 end
local cexp = now + ttl * 1000
local mexp = cexp + grace * 1000
redis.call('HSET', ckey, 't', ttl, 'e', cexp)
redis.call('PEXPIREAT', ckey, cexp)
for _, h in ipairs(held(prefix, f[2], cid, now)) do
  local id, m = h[1], h[2]
  local mkey = prefix .. id
  local e = math.max(m.e, mexp)
  redis.call('HSET', mkey, 'ce', cexp, 'e', e)
  redis.call('PEXPIREAT', mkey, e)
  redis.call('ZADD', k.exp, e, id)
  redis.call('ZADD', k.clm, cexp, id)
end
return 1
