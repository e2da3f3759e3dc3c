-- Lists live messages after a marker, oldest first.
-- KEYS: queue (1..6). ARGV: marker seq, limit, client id, echo, include claimed,
-- include delayed (the last three '1' or '0').
-- Returns {now, rows, seq of the last row (the marker when none)}.
local k = queue_keys(1)
local last, limit, client = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local echo, with_claimed, with_delayed = ARGV[4] == '1', ARGV[5] == '1', ARGV[6] == '1'
local now = now_ms()
local rows, gone = {}, {}
if limit > 0 then
  scan(k, last, '+inf', function(id, seq, m)
    if not m then
      gone[#gone + 1] = id
    elseif (echo or m.k ~= client) and (with_claimed or not is_claimed(m, now))
        and (with_delayed or not is_delayed(m, now)) then
      rows[#rows + 1] = row(id, m, now)
      last = seq
    end
    return #rows >= limit
  end, limit, now)
end
forget(k, gone)
return {now, rows, last}
