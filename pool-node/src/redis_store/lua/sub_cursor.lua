-- Reads or writes the delivery cursor (field 'x') of a live subscription.
-- KEYS: subscription hash, queue record. ARGV: id, mode ('get', 'set' or 'reset'),
-- marker (for 'set'). 'reset' stores the queue's last sequence number (0 if none).
-- Returns the cursor, or nil when there is none or no live subscription
-- ('reset' returns the queue's end marker even then).
local now = now_ms()
local live = sub_row(KEYS[1], ARGV[1], now) ~= nil
local mode = ARGV[2]
if mode == 'get' then
  if not live then return false end
  return redis.call('HGET', KEYS[1], 'x')
end
local marker = ARGV[3]
if mode == 'reset' then marker = redis.call('HGET', KEYS[2], 'seq') or '0' end
if live then redis.call('HSET', KEYS[1], 'x', marker) end
return marker
