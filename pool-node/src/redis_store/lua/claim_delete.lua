-- Releases a claim: the messages it holds become free (their lifetime stays extended).
-- KEYS: claim hash, queue (2..9). ARGV: claim id.
local ckey, k = KEYS[1], queue_keys(2)
local now = now_ms()
local f = live_claim(ckey, k, now, 'ids')
local holding = f and held(k, f[3], ARGV[1], now) or {}
if #holding > 0 then
  local ids = {}
  for i, h in ipairs(holding) do ids[i] = h[1] end
  local seqs = redis.call('ZMSCORE', k.hld, unpack(ids))
  local by_id, by_seq = {}, {}
  for i, h in ipairs(holding) do
    local m = h[2]
    m.ci, m.ce = '', 0
    by_id[#by_id + 1], by_id[#by_id + 2] = ids[i], encode(m)
    if seqs[i] then by_seq[#by_seq + 1], by_seq[#by_seq + 2] = seqs[i], ids[i] end
  end
  call_all('HSET', k.msg, by_id)
  call_all('ZREM', k.hld, ids)
  call_all('ZREM', k.clm, ids)
  call_all('ZADD', k.fre, by_seq)
  keep(k, 0, {k.fre})
end
redis.call('DEL', ckey)
return 1
