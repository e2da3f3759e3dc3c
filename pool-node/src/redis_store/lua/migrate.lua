-- Moves up to ARGV[1] messages of a queue written in layout 1 (one 'ids' zset of
-- every message by seq) to the indexes of layout 2 (fre, hld, lat by state).
-- KEYS: queue (1..8), the layout 1 ids zset (9).
-- Returns how many entries the ids zset has left (0: the queue is done, the key gone).
local k, old = queue_keys(1), KEYS[9]
local now = now_ms()
local batch = redis.call('ZRANGE', old, 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
if #batch == 0 then return 0 end
local ids = {}
for i = 1, #batch, 2 do ids[#ids + 1] = batch[i] end
local found = load_all(k, ids, now)
local gone, stale_claims, stale_delays = {}, {}, {}
local into = {[k.fre] = {}, [k.hld] = {}, [k.lat] = {}}
for i, id in ipairs(ids) do
  local m, seq = found[i], batch[2 * i]
  local index = k.fre
  if not m then
    gone[#gone + 1] = id
    index = nil
  elseif is_claimed(m, now) then
    index = k.hld
  elseif is_delayed(m, now) then
    index = k.lat
  else
    -- Layout 1 left ended claims and passed delays in clm and dly.
    stale_claims[#stale_claims + 1] = id
    stale_delays[#stale_delays + 1] = id
  end
  if index then
    local pairs_of = into[index]
    pairs_of[#pairs_of + 1], pairs_of[#pairs_of + 2] = seq, id
  end
end
forget(k, gone)
call_all('ZREM', k.clm, stale_claims)
call_all('ZREM', k.dly, stale_delays)
for index, by_seq in pairs(into) do call_all('ZADD', index, by_seq) end
call_all('ZREM', old, ids)
keep(k, 0, {k.fre, k.hld, k.lat})
return redis.call('ZCARD', old)
