-- Appends messages to a queue, creating its record if needed.
-- KEYS: queue (1..5). ARGV: message prefix, client id, plain, check, expected
-- metadata, then per message: id, ttl s, delay s, body, checksum.
-- plain '1': store nothing and return -1 when the queue's metadata has
-- `_enable_encrypt_messages: true` (its bodies must be encrypted first).
-- check '1': store nothing and return -2 unless the queue's metadata is exactly the
-- expected one ('' for a queue that does not exist yet).
-- Returns the server time (ms) when stored.
local k = queue_keys(1)
local prefix, client, plain, check, expected = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local meta = redis.call('HGET', k.q, 'meta')
if check == '1' and (meta or '') ~= expected then
  return -2
end
if not meta then
  redis.call('HSET', k.q, 'meta', '{}')
elseif plain == '1' and string.find(meta, '_enable_encrypt_messages', 1, true) then
  local ok, doc = pcall(cjson.decode, meta)
  if ok and type(doc) == 'table' and doc['_enable_encrypt_messages'] == true then
    return -1
  end
end
local now = now_ms()
-- Times go to Redis as integer strings: a Lua number handed to redis.call is
-- formatted with '%.17g', which cost about a tenth of a post's script time.
local now_text = string.format('%d', now)
local count = (#ARGV - 5) / 5
if count < 1 then return now end
-- As index() would for each message, with one call per index for the whole post.
local seq = redis.call('HINCRBY', k.q, 'seq', count) - count
local by_seq, by_expiry, by_delay = {}, {}, {}
for i = 6, #ARGV, 5 do
  local id, ttl, delay = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local mkey = prefix .. id
  local e = now + ttl * 1000
  local d = 0
  if delay > 0 then d = now + delay * 1000 end
  local e_text = string.format('%d', e)
  redis.call('HSET', mkey, 'b', ARGV[i + 3], 'h', ARGV[i + 4], 'c', now_text, 'e', e_text,
             'd', string.format('%d', d), 'k', client, 't', ARGV[i + 1], 'ci', '', 'ce', '0', 'n', '0')
  redis.call('PEXPIREAT', mkey, e_text)
  seq = seq + 1
  by_seq[#by_seq + 1], by_seq[#by_seq + 2] = string.format('%d', seq), id
  by_expiry[#by_expiry + 1], by_expiry[#by_expiry + 2] = e_text, id
  if d > now then
    by_delay[#by_delay + 1], by_delay[#by_delay + 2] = string.format('%d', math.min(d, e)), id
  end
end
zadd_all(k.ids, by_seq)
zadd_all(k.exp, by_expiry)
zadd_all(k.dly, by_delay)
return now
