-- Takes, renews or gives up the delivery lease of a live subscription, kept in
-- its hash: 'lh' holder, 'le' lease expires ms.
-- KEYS: subscription hash. ARGV: id, holder, mode ('take' or 'release'), ttl ms.
-- 'take' returns 1 when holder holds the lease now, 0 when another holder's lease
-- has not run out or the subscription is gone; 'release' returns 1.
local now = now_ms()
local skey, id, holder, mode = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local f = redis.call('HMGET', skey, 'lh', 'le')
if mode == 'release' then
  if f[1] == holder then redis.call('HDEL', skey, 'lh', 'le') end
  return 1
end
if not sub_row(skey, id, now) then return 0 end
if f[1] == holder or not f[2] or tonumber(f[2]) <= now then
  redis.call('HSET', skey, 'lh', holder, 'le', int(now + tonumber(ARGV[4])))
  return 1
end
return 0
