-- Lists live messages after a marker, oldest first.
-- KEYS: queue (1..8). ARGV: marker seq, limit, client id, echo, include claimed,
-- include delayed (the last three '1' or '0').
-- Returns {now, rows, marker}: the seq of the last row, or of the last message
-- looked at when the scan budget ran out first (the given marker when neither).
local k = queue_keys(1)
local last, limit, client = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local echo, with_claimed, with_delayed = ARGV[4] == '1', ARGV[5] == '1', ARGV[6] == '1'
local now = now_ms()
local rows, gone = {}, {}
if limit > 0 then
  promote(k, now)
  local indexes = {k.fre}
  if with_claimed then indexes[#indexes + 1] = k.hld end
  if with_delayed then indexes[#indexes + 1] = k.lat end
  local visited, out_of_budget = scan(k, indexes, last, '+inf', function(id, seq, m)
    if not m then
      gone[#gone + 1] = id
    elseif (echo or m.k ~= client) and (with_claimed or not is_claimed(m, now))
        and (with_delayed or not is_delayed(m, now)) then
      rows[#rows + 1] = row(id, m, now)
      last = seq
    end
    return #rows >= limit
  end, limit, now)
  if out_of_budget then last = visited end
end
forget(k, gone)
count_expired(k, #gone)
return {now, rows, last}
