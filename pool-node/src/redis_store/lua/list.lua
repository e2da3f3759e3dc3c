-- Lists live messages after a marker, oldest first.
-- KEYS: queue (1..5). ARGV: message prefix, marker seq, limit, client id,
-- echo, include claimed, include delayed (the last three '1' or '0').
-- Returns {now, rows, seq of the last row (the marker when none)}.
local k = queue_keys(1)
local prefix, last, limit, client = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local echo, with_claimed, with_delayed = ARGV[5] == '1', ARGV[6] == '1', ARGV[7] == '1'
local now = now_ms()
local rows = {}
if limit > 0 then
  scan(k, last, '+inf', function(id, seq)
    local m, shown = load_with_row(prefix .. id, id, now)
    if not m then
      unindex(k, id)
    elseif (echo or m.k ~= client) and (with_claimed or not is_claimed(m, now))
        and (with_delayed or not is_delayed(m, now)) then
      rows[#rows + 1] = shown
      last = seq
    end
    return #rows >= limit
  end, limit)
end
return {now, rows, last}
