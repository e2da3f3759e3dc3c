-- Renews a live claim: it expires ttl from now, its messages live at least ttl + grace.
-- KEYS: claim hash, queue (2..9). ARGV: claim id, ttl s, grace s.
-- Returns 1, or 0 when there is no live claim.
local ckey, k = KEYS[1], queue_keys(2)
local cid, ttl, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local f = live_claim(ckey, k, now, 'ids')
if not f then return 0 end
local cexp = now + ttl * 1000
local mexp = cexp + grace * 1000
redis.call('HSET', ckey, 't', ttl, 'e', int(cexp))
redis.call('PEXPIREAT', ckey, int(cexp))
local by_id, by_expiry, by_claim = {}, {}, {}
local latest = 0
for _, h in ipairs(held(k, f[3], cid, now)) do
  local id, m = h[1], h[2]
  m.e, m.ce = math.max(m.e, mexp), cexp
  latest = math.max(latest, m.e)
  by_id[#by_id + 1], by_id[#by_id + 2] = id, encode(m)
  by_expiry[#by_expiry + 1], by_expiry[#by_expiry + 2] = int(m.e), id
  by_claim[#by_claim + 1], by_claim[#by_claim + 2] = int(cexp), id
end
if #by_id > 0 then
  call_all('HSET', k.msg, by_id)
  call_all('ZADD', k.exp, by_expiry)
  call_all('ZADD', k.clm, by_claim)
  keep(k, latest, {k.clm})
end
return 1
