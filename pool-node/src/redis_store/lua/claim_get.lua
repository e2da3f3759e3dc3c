-- A live claim and the messages it still holds.
-- KEYS: claim hash, queue (2..9). ARGV: claim id.
-- Returns {now, ttl s, expires ms, rows}, or nil when there is no live claim.
local ckey, k = KEYS[1], queue_keys(2)
local now = now_ms()
local f = live_claim(ckey, k, now, 't', 'ids')
if not f then return false end
local rows = {}
for _, h in ipairs(held(k, f[4], ARGV[1], now)) do
  rows[#rows + 1] = row(h[1], h[2], now)
end
return {now, tonumber(f[3]), tonumber(f[1]), rows}
