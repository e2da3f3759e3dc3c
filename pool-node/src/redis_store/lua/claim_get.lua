-- A live claim and the messages it still holds.
-- KEYS: claim hash. ARGV: message prefix, claim id.
-- Returns {now, ttl s, expires ms, rows}, or nil when there is no live claim.
local f = redis.call('HMGET', KEYS[1], 't', 'e', 'ids')
local now = now_ms()
if not f[2] or tonumber(f[2]) <= now then return false end
local rows = {}
for _, h in ipairs(held(ARGV[1], f[3], ARGV[2], now)) do
  rows[#rows + 1] = row(ARGV[1] .. h[1], h[1], now)
end
return {now, tonumber(f[1]), tonumber(f[2]), rows}
