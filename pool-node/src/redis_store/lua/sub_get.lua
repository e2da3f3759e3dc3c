-- A live subscription; with ARGV[2] = '1' or '0', sets whether it is confirmed first.
-- KEYS: subscription hash. ARGV: id, confirmed ('' to leave it).
-- Returns {now, row}, or nil when there is no live subscription.
local now = now_ms()
if not sub_row(KEYS[1], ARGV[1], now) then return false end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'f', ARGV[2]) end
return {now, sub_row(KEYS[1], ARGV[1], now)}
