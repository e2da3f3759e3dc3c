-- The live messages among some ids, in their order.
-- ARGV: message prefix, ids... Returns {now, rows}.
local now = now_ms()
local rows = {}
for i = 2, #ARGV do
  local mkey = ARGV[1] .. ARGV[i]
  if load(mkey, now) then rows[#rows + 1] = row(mkey, ARGV[i], now) end
end
return {now, rows}
