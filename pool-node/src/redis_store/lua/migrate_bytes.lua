-- Counts the body bytes ('b') of a queue written before layout 3, which kept none:
-- up to ARGV[3] messages per call, from rank ARGV[2] of its exp zset, the sum so far
-- kept in 'bm:<run>' (ARGV[1], one field per migration run). Run at start-up, while
-- only migrating pool-nodes use the store; the first run to finish a queue sets its
-- 'b', which the others then leave (writes may have changed it since). A run cut
-- short leaves its field behind (a few bytes; other runs must not clear it, as it
-- may be one still going).
-- KEYS: queue (1..8). ARGV: run, rank to start at, batch.
-- Returns the next rank, or -1 when the queue is done.
local k = queue_keys(1)
local run, from, batch = 'bm:' .. ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('ZRANGE', k.exp, from, from + batch - 1)
local sum = stored_bytes(k, ids)
if from > 0 then sum = sum + tonumber(redis.call('HGET', k.q, run) or 0) end
if #ids < batch then
  redis.call('HSETNX', k.q, 'b', int(sum))
  redis.call('HDEL', k.q, run)
  return -1
end
redis.call('HSET', k.q, run, int(sum))
return from + batch
