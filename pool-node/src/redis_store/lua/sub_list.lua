-- Lists live subscriptions of a queue in creation order after a marker.
-- KEYS: subs zset. ARGV: subscription prefix, marker seq, limit.
-- Returns {now, rows, seq of the last row (the marker when none)}.
local prefix, last, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local rows = {}
local lo = '(' .. last
while #rows < limit do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[1], lo, '+inf', 'WITHSCORES', 'LIMIT', 0, 100)
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local r = sub_row(prefix .. batch[i], batch[i], now)
    if r then
      rows[#rows + 1] = r
      last = tonumber(batch[i + 1])
      if #rows >= limit then break end
    else
      redis.call('ZREM', KEYS[1], batch[i])
    end
  end
  lo = '(' .. batch[#batch]
end
return {now, rows, last}
