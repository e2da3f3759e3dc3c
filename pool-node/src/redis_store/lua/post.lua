-- Appends messages to a queue, creating its record if needed; the messages of
-- several posts with the same checks go in one call (group commit).
-- KEYS: queue (1..8), then the idempotency keys of the posts that have one.
-- ARGV: plain, check, expected metadata, then per post: the index in KEYS of its
-- idempotency key (0: none), that key's window in ms, its number of messages n,
-- then per message: client id, id, ttl s, delay s, body, checksum.
-- plain '1': store nothing and return -1 when the queue's metadata has
-- `_enable_encrypt_messages: true` (its bodies must be encrypted first).
-- check '1': store nothing and return -2 unless the queue's metadata is exactly the
-- expected one ('' for a queue that does not exist yet).
-- Returns the server time in ms when every post stored (no post had a key), else
-- {server time in ms, then per post: '' when stored, or the comma-separated ids an
-- earlier post with the same idempotency key stored (this one stored nothing)}.
local k = queue_keys(1)
local plain, check, expected = ARGV[1], ARGV[2], ARGV[3]
local record = redis.call('HMGET', k.q, 'meta', 'x')
local meta = record[1]
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
-- Which posts store: a post whose key is recorded answers the ids recorded; one
-- that stores records its key at once, so a later post of this batch sees it.
local answers, storing, count, keyed = {now}, {}, 0, false
local i = 4
while i <= #ARGV do
  local slot, window, n = tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[i + 2])
  local seen = ''
  if slot > 0 then
    keyed = true
    seen = redis.call('GET', KEYS[slot]) or ''
    if seen == '' then
      local ids = {}
      for j = i + 3, i + 2 + 6 * n, 6 do ids[#ids + 1] = ARGV[j + 1] end
      redis.call('SET', KEYS[slot], table.concat(ids, ','), 'PX', window)
    end
  end
  answers[#answers + 1] = seen
  if seen == '' then
    storing[#storing + 1] = i + 3
    count = count + n
  end
  i = i + 3 + 6 * n
end
if not keyed then answers = now end
if count < 1 then return answers end
-- As add() would for each message, with one call per key for the whole post.
local seq = redis.call('HINCRBY', k.q, 'seq', count) - count
-- Every 16th message, 32 expired ones go (besides those of this post's size):
-- more go than come, with a range call on one post in 16.
if math.floor((seq + count) / 16) > math.floor(seq / 16) then sweep(k, now, 32 + count) end
-- exp and msg hold the same messages, so they are created together; fre
-- empties whenever everything is claimed, so it may be new at any post.
local written = {k.fre}
local msg_ttl = redis.call('PTTL', k.msg)
if msg_ttl < 0 then written = {k.fre, k.exp, k.msg} end
local by_id, by_free, by_later, by_expiry, by_delay = {}, {}, {}, {}, {}
local latest, bytes = 0, 0
for _, first in ipairs(storing) do
  for j = first, first - 1 + 6 * tonumber(ARGV[first - 1]), 6 do
    local client, id = ARGV[j], ARGV[j + 1]
    local ttl, delay = tonumber(ARGV[j + 2]), tonumber(ARGV[j + 3])
    local e = now + ttl * 1000
    local d = 0
    if delay > 0 then d = now + delay * 1000 end
    latest = math.max(latest, e)
    bytes = bytes + #ARGV[j + 4]
    by_id[#by_id + 1] = id
    by_id[#by_id + 1] = encode({e = e, d = d, ci = '', ce = 0, n = 0, k = client, t = ttl,
                                c = now, h = ARGV[j + 5], b = ARGV[j + 4]})
    seq = seq + 1
    by_expiry[#by_expiry + 1], by_expiry[#by_expiry + 2] = int(e), id
    if d > now then
      by_later[#by_later + 1], by_later[#by_later + 2] = int(seq), id
      by_delay[#by_delay + 1], by_delay[#by_delay + 2] = int(math.min(d, e)), id
    else
      by_free[#by_free + 1], by_free[#by_free + 2] = int(seq), id
    end
  end
end
bytes_from_empty(k, msg_ttl == -2)
count_bytes(k, bytes)
call_all('HSET', k.msg, by_id)
call_all('ZADD', k.fre, by_free)
call_all('ZADD', k.exp, by_expiry)
if #by_delay > 0 then
  call_all('ZADD', k.lat, by_later)
  call_all('ZADD', k.dly, by_delay)
  written[#written + 1] = k.lat
  written[#written + 1] = k.dly
end
keep(k, latest, written, tonumber(record[2] or 0))
return answers
