-- The live messages among some ids, in their order.
-- KEYS: queue (1..8). ARGV: ids... Returns {now, rows}.
local k = queue_keys(1)
local now = now_ms()
local found = load_all(k, ARGV, now)
local rows = {}
for i = 1, #ARGV do
  if found[i] then rows[#rows + 1] = row(ARGV[i], found[i], now) end
end
return {now, rows}
