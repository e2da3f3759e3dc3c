-- Replaces the metadata of an existing queue.
-- KEYS: queue record. ARGV: metadata JSON. Returns 1, or 0 when the queue does not exist.
if redis.call('HEXISTS', KEYS[1], 'meta') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'meta', ARGV[1])
return 1
