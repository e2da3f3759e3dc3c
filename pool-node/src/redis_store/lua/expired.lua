-- One step of the expiry sweep on a queue: removes up to limit of its expired
-- messages, and takes the count of its messages removed because they expired
-- (these, and those other scripts removed since the last step).
-- KEYS: queue (1..8). ARGV: limit. Returns the count.
local k = queue_keys(1)
sweep(k, now_ms(), tonumber(ARGV[1]))
local n = tonumber(redis.call('HGET', k.q, 'xn') or 0)
if n > 0 then redis.call('HDEL', k.q, 'xn') end
return n
