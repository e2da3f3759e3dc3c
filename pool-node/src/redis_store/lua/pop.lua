-- Removes and returns up to limit free messages (not claimed, not delayed), oldest first.
-- KEYS: queue (1..5). ARGV: message prefix, limit. Returns {now, rows}.
local k = queue_keys(1)
local prefix, limit = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local rows = {}
if limit > 0 then
  scan(k, 0, '+inf', function(id)
    local mkey = prefix .. id
    local m, shown = load_with_row(mkey, id, now)
    if not m then
      unindex(k, id)
    elseif not is_claimed(m, now) and not is_delayed(m, now) then
      rows[#rows + 1] = shown
      redis.call('DEL', mkey)
      unindex(k, id)
    end
    return #rows >= limit
  end, limit)
end
return {now, rows}
