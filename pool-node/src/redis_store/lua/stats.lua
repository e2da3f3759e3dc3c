-- Counts of a queue from its sorted sets, and its oldest and newest live message.
-- KEYS: queue (1..5). ARGV: message prefix.
-- Returns {now, total, claimed, delayed, oldest row or nil, newest row or nil}.
local k = queue_keys(1)
local prefix = ARGV[1]
local now = now_ms()
-- Drop a bounded batch of expired ids so that the scans below stay short.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.exp, '-inf', now, 'LIMIT', 0, 100)) do
  unindex(k, id)
end
local live = '(' .. now
local total = redis.call('ZCOUNT', k.exp, live, '+inf')
local claimed = redis.call('ZCOUNT', k.clm, live, '+inf')
local delayed = redis.call('ZCOUNT', k.dly, live, '+inf')

local function summary(id)
  local mkey = prefix .. id
  if not load(mkey, now) then
    unindex(k, id)
    return nil
  end
  return row(mkey, id, now)
end

local oldest, newest = false, false
if total > 0 then
  scan(k, 0, '+inf', function(id)
    oldest = summary(id) or false
    return oldest
  end, 1)
  while not newest do
    local last = redis.call('ZRANGE', k.ids, -1, -1)
    if #last == 0 then break end
    newest = summary(last[1]) or false
  end
end
return {now, total, claimed, delayed, oldest, newest}
