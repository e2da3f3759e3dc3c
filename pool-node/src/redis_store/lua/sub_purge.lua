-- Deletes every subscription of a queue.
-- KEYS: subs zset, subscriber hash. ARGV: subscription prefix.
while true do
  local ids = redis.call('ZRANGE', KEYS[1], 0, 499)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do redis.call('DEL', ARGV[1] .. id) end
  redis.call('ZREM', KEYS[1], unpack(ids))
end
redis.call('DEL', KEYS[2])
return 1
