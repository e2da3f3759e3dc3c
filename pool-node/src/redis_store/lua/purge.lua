-- Deletes every message of a queue and the claims holding them; with
-- ARGV[3] == '1' the queue itself (its metadata). The sequence number stays,
-- so a re-created queue numbers on and subscriptions' cursors stay valid.
-- KEYS: queue (1..5). ARGV: message prefix, claim prefix, drop record.
local k = queue_keys(1)
local prefix, cprefix = ARGV[1], ARGV[2]
while true do
  local ids = redis.call('ZRANGE', k.ids, 0, 499)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local ci = redis.call('HGET', prefix .. id, 'ci')
    if ci and ci ~= '' then redis.call('DEL', cprefix .. ci) end
    redis.call('DEL', prefix .. id)
  end
  redis.call('ZREM', k.ids, unpack(ids))
end
redis.call('DEL', k.exp, k.clm, k.dly)
if ARGV[3] == '1' then redis.call('HDEL', k.q, 'meta') end
return 1
