-- Counts of a queue from its sorted sets, its oldest and newest live message, and
-- the bytes of its bodies.
-- KEYS: queue (1..8).
-- Returns {now, total, claimed, delayed, oldest row or nil, newest row or nil, bytes}.
local k = queue_keys(1)
local now = now_ms()
-- Drop a bounded batch of expired messages so that the scans below stay short.
sweep(k, now, 100)
local live = '(' .. now
local total = redis.call('ZCOUNT', k.exp, live, '+inf')
local claimed = redis.call('ZCOUNT', k.clm, live, '+inf')
local delayed = redis.call('ZCOUNT', k.dly, live, '+inf')

local oldest, newest = false, false
if total > 0 then
  local gone = {}
  scan(k, {k.fre, k.hld, k.lat}, 0, '+inf', function(id, _, m)
    if not m then
      gone[#gone + 1] = id
      return false
    end
    oldest = row(id, m, now)
    return true
  end, 1, now)
  forget(k, gone)
  count_expired(k, #gone)
  -- The newest: the last entry of the three indexes with the highest seq
  -- (looking at most at 100 expired ones).
  for _ = 1, 100 do
    local id, seq = nil, -1
    for _, key in ipairs({k.fre, k.hld, k.lat}) do
      local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      if #last > 0 and tonumber(last[2]) > seq then id, seq = last[1], tonumber(last[2]) end
    end
    if not id then break end
    local m = load_all(k, {id}, now)[1]
    if m then
      newest = row(id, m, now)
      break
    end
    forget(k, {id})
    count_expired(k, 1)
  end
end
bytes_from_empty(k)
local bytes = math.max(0, tonumber(redis.call('HGET', k.q, 'b') or 0))
return {now, total, claimed, delayed, oldest, newest, bytes}
