-- Changes a live subscription. KEYS: subscription hash, subscriber hash.
-- ARGV: subscription prefix, id, subscriber, ttl s, options ('' leaves a field).
-- Returns 'ok', 'missing' or 'conflict' (the subscriber has another live one).
local skey, byname = KEYS[1], KEYS[2]
local prefix, id, subscriber, ttl, options = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = now_ms()
local current = sub_row(skey, id, now)
if not current then return 'missing' end
if subscriber ~= '' and subscriber ~= current[2] then
  local other = redis.call('HGET', byname, subscriber)
  if other and other ~= id and sub_row(prefix .. other, other, now) then return 'conflict' end
  if redis.call('HGET', byname, current[2]) == id then redis.call('HDEL', byname, current[2]) end
  redis.call('HSET', byname, subscriber, id)
  redis.call('HSET', skey, 'u', subscriber)
end
if options ~= '' then redis.call('HSET', skey, 'o', options) end
if ttl ~= '' then
  local e = now + tonumber(ttl) * 1000
  redis.call('HSET', skey, 't', ttl, 'e', e)
  redis.call('PEXPIREAT', skey, e)
end
return 'ok'
