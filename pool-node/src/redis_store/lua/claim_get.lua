-- A live claim and the messages it still holds.
-- KEYS: claim hash, queue (2..7). ARGV: claim id.
-- Returns {now, ttl s, expires ms, rows}, or nil when there is no live claim.
local ckey, k = KEYS[1], queue_keys(2)
local f = redis.call('HMGET', ckey, 't', 'e', 'ids')
local now = now_ms()
if not f[2] or tonumber(f[2]) <= now then return false end
local rows = {}
for _, h in ipairs(held(k, f[3], ARGV[1], now)) do
  rows[#rows + 1] = row(h[1], h[2], now)
end
return {now, tonumber(f[1]), tonumber(f[2]), rows}
