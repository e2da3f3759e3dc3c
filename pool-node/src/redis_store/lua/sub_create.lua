-- Subscribes a subscriber to a queue unless it has a live subscription there.
-- KEYS: subs zset (id -> seq), subscriber hash (subscriber -> id), seq counter.
-- ARGV: subscription prefix, new id, subscriber, ttl s, options, confirmed (1/0).
-- Returns {id, 1} when created, {existing id, 0} otherwise.
local prefix, id, subscriber, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local old = redis.call('HGET', KEYS[2], subscriber)
if old then
  if sub_row(prefix .. old, old, now) then return {old, 0} end
  redis.call('ZREM', KEYS[1], old)
end
local skey, e = prefix .. id, now + ttl * 1000
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', skey, 'u', subscriber, 't', ttl, 'c', now, 'e', e, 'o', ARGV[5], 'f', ARGV[6])
redis.call('PEXPIREAT', skey, e)
redis.call('ZADD', KEYS[1], seq, id)
redis.call('HSET', KEYS[2], subscriber, id)
return {id, 1}
