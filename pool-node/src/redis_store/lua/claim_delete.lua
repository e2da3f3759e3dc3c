-- Releases a claim: the messages it holds become free (their lifetime stays extended).
-- KEYS: claim hash, queue (2..7). ARGV: claim id.
local ckey, k = KEYS[1], queue_keys(2)
local now = now_ms()
local by_id, released = {}, {}
for _, h in ipairs(held(k, redis.call('HGET', ckey, 'ids'), ARGV[1], now)) do
  local id, m = h[1], h[2]
  m.ci, m.ce = '', 0
  by_id[#by_id + 1], by_id[#by_id + 2] = id, encode(m)
  released[#released + 1] = id
end
call_all('HSET', k.msg, by_id)
call_all('ZREM', k.clm, released)
redis.call('DEL', ckey)
return 1
