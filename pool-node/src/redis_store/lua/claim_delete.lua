-- Releases a claim: the messages it holds become free (their lifetime stays extended).
-- KEYS: claim hash, queue (2..6). ARGV: message prefix, claim id.
local ckey, k = KEYS[1], queue_keys(2)
local prefix, cid = ARGV[1], ARGV[2]
local now = now_ms()
for _, h in ipairs(held(prefix, redis.call('HGET', ckey, 'ids'), cid, now)) do
  redis.call('HSET', prefix .. h[1], 'ci', '', 'ce', 0)
  redis.call('ZREM', k.clm, h[1])
end
redis.call('DEL', ckey)
return 1
