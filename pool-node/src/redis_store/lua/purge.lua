-- Deletes every message of a queue and the claims holding them; with
-- ARGV[2] == '1' the queue itself (its metadata). The sequence number stays,
-- so a re-created queue numbers on and subscriptions' cursors stay valid.
-- KEYS: queue (1..6). ARGV: claim prefix, drop record.
local k = queue_keys(1)
local cprefix = ARGV[1]
-- A message with a claim id is in the clm index (see claim_create.lua).
local claims = {}
local claimed = redis.call('ZRANGE', k.clm, 0, -1)
for i = 1, #claimed, 400 do
  local values = redis.call('HMGET', k.msg, unpack(claimed, i, math.min(i + 399, #claimed)))
  for _, v in ipairs(values) do
    if v then
      local _, _, ci = cmsgpack.unpack(v)
      if ci ~= '' then claims[ci] = true end
    end
  end
end
for ci in pairs(claims) do redis.call('DEL', cprefix .. ci) end
redis.call('UNLINK', k.ids, k.exp, k.clm, k.dly, k.msg)
if ARGV[2] == '1' then redis.call('HDEL', k.q, 'meta') end
return 1
