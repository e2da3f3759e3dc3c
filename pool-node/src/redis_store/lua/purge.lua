-- Deletes every message of a queue and ends its claims; with ARGV[1] == '1' the
-- queue itself (its metadata). The sequence number stays, so a re-created queue
-- numbers on and subscriptions' cursors stay valid. Constant work whatever the
-- queue holds: UNLINK frees the keys in the background, and moving the claim
-- generation on ends every claim at once (their hashes expire by themselves).
-- KEYS: queue (1..8). ARGV: drop record.
local k = queue_keys(1)
if redis.call('EXISTS', k.q) == 1 then redis.call('HINCRBY', k.q, 'g', 1) end
redis.call('UNLINK', k.fre, k.hld, k.lat, k.exp, k.clm, k.dly, k.msg)
redis.call('HDEL', k.q, 'b')
if ARGV[1] == '1' then redis.call('HDEL', k.q, 'meta') end
return 1
