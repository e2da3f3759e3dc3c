-- Adds messages parked by claim_create.lua (in a Redis Cluster, where the dead
-- letter queue is in another slot than the queue) to the dead letter queue. A
-- message it has already is skipped, so a move that was cut short can be done
-- again without a duplicate.
-- KEYS: dead letter queue (1..8). ARGV: parked members (message id and packed
-- message, packed together), oldest first.
-- Returns how many messages were added.
local dk = queue_keys(1)
local now = now_ms()
local added = 0
for i = 1, #ARGV do
  local id, packed = cmsgpack.unpack(ARGV[i])
  local m = decode(packed, now)
  if m and redis.call('HEXISTS', dk.msg, id) == 0 then
    redis.call('HSETNX', dk.q, 'meta', '{}')
    add(dk, id, m)
    added = added + 1
  end
end
return added
