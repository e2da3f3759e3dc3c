-- Deletes a subscription. KEYS: subscription hash, subs zset, subscriber hash. ARGV: id.
local subscriber = redis.call('HGET', KEYS[1], 'u')
if subscriber and redis.call('HGET', KEYS[3], subscriber) == ARGV[1] then
  redis.call('HDEL', KEYS[3], subscriber)
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
