-- Removes and returns up to limit free messages (not claimed, not delayed), oldest first.
-- KEYS: queue (1..8). ARGV: limit. Returns {now, rows}.
local k = queue_keys(1)
local limit = tonumber(ARGV[1])
local now = now_ms()
local rows, gone, expired = {}, {}, 0
if limit > 0 then
  promote(k, now)
  scan(k, {k.fre}, 0, '+inf', function(id, _, m)
    if not m then
      gone[#gone + 1] = id
      expired = expired + 1
    elseif not is_claimed(m, now) and not is_delayed(m, now) then
      rows[#rows + 1] = row(id, m, now)
      gone[#gone + 1] = id
    end
    return #rows >= limit
  end, limit, now)
end
forget_free(k, gone)
count_expired(k, expired)
return {now, rows}
