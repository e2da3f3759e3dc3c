-- Counts of a queue from its sorted sets, and its oldest and newest live message.
-- KEYS: queue (1..6).
-- Returns {now, total, claimed, delayed, oldest row or nil, newest row or nil}.
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
  scan(k, 0, '+inf', function(id, _, m)
    if not m then
      gone[#gone + 1] = id
      return false
    end
    oldest = row(id, m, now)
    return true
  end, 1, now)
  forget(k, gone)
  while not newest do
    local last = redis.call('ZRANGE', k.ids, -1, -1)
    if #last == 0 then break end
    local m = load_all(k, last, now)[1]
    if m then newest = row(last[1], m, now) else forget(k, last) end
  end
end
return {now, total, claimed, delayed, oldest, newest}
