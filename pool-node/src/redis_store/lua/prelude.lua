-- Helpers prepended to every script of the redis store.
--
-- A queue is eight keys, passed as KEYS[i .. i+7] and read with queue_keys(i):
--   q   hash: 'meta' (metadata JSON), 'seq' (last message sequence number),
--       'x' (ms until which the message keys below live), 'g' (claim generation:
--       a purge moves it on, which ends every claim made before), 'xn' (messages
--       removed because they expired, not yet taken by the expiry sweep), 'b' (the
--       bytes of the bodies in msg, kept by every write that adds or removes one)
--   fre zset: message id -> seq, for the messages free to claim
--   hld zset: message id -> seq, for claimed messages
--   lat zset: message id -> seq, for delayed messages
--   exp zset: message id -> expiry (ms), for every message
--   clm zset: message id -> claim expiry (ms), for the messages of hld
--   dly zset: message id -> min(delay end, expiry) (ms), for the messages of lat
--   msg hash: message id -> the message, packed by encode()
-- Every message is in exactly one of fre, hld and lat, so a claim, a pop or a
-- default listing reads fre from its head and meets only messages it returns.
-- A claim that ends or a delay that passes leaves its message in hld or lat
-- until promote() (run first by every script that reads fre) moves it to fre.
-- A message has: e expires ms, d delay end ms (0: none), ci claim id ('' none),
-- ce claim expires ms, n claim count, k client id, t ttl s as posted, c created ms,
-- h checksum, b body, and for a dead-lettered message s, the queue it came from.
-- Every time is the server clock (TIME) in ms; a thing is live while its
-- expiry is > now. Expired messages are removed lazily: by the scans that meet
-- them, by every post (a few of the oldest expired), by stats and by the
-- pool-node's expiry sweep (expired.lua, which also takes the count of those the
-- others removed, noted in the queue's 'xn'); the message keys themselves expire
-- an hour after the last message in them (see keep()), so a queue nobody touches
-- any more leaves nothing behind but its record.
-- No script's work grows with the size of a queue: scans visit at most BUDGET
-- entries and promote() moves at most PROMOTE messages per index.

if redis.replicate_commands then redis.replicate_commands() end

-- The most index entries one scan visits (expired messages, messages a listing
-- filters out); what is left waits for the next call.
local BUDGET = 1000
-- The most messages whose claim ended, and whose delay passed, that one script
-- returns to fre; each message moves once, the rest wait for the next script.
local PROMOTE = 100
-- How long (ms) a queue's message keys outlive its last message: long enough for
-- the expiry sweep to visit every queue of a large pool before Redis drops them.
local KEEP = 3600000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An integer as Redis should get it (a Lua number is formatted with '%.17g',
-- which costs more than the command it is passed to).
local function int(n) return string.format('%d', n) end

local function queue_keys(i)
  return {q = KEYS[i], fre = KEYS[i + 1], hld = KEYS[i + 2], lat = KEYS[i + 3],
          exp = KEYS[i + 4], clm = KEYS[i + 5], dly = KEYS[i + 6], msg = KEYS[i + 7]}
end

local function encode(m)
  if m.s then return cmsgpack.pack(m.e, m.d, m.ci, m.ce, m.n, m.k, m.t, m.c, m.h, m.b, m.s) end
  return cmsgpack.pack(m.e, m.d, m.ci, m.ce, m.n, m.k, m.t, m.c, m.h, m.b)
end

-- The message packed in v, or nil when v is missing or the message expired.
local function decode(v, now)
  if not v then return nil end
  local e, d, ci, ce, n, k, t, c, h, b, s = cmsgpack.unpack(v)
  if e <= now then return nil end
  return {e = e, d = d, ci = ci, ce = ce, n = n, k = k, t = t, c = c, h = h, b = b, s = s}
end

-- The live messages of queue k among ids (nil where gone or expired).
local function load_all(k, ids, now)
  local found = {}
  if #ids == 0 then return found end
  local values = redis.call('HMGET', k.msg, unpack(ids))
  for i = 1, #ids do found[i] = decode(values[i], now) end
  return found
end

local function is_claimed(m, now) return m.ci ~= '' and m.ce > now end
local function is_delayed(m, now) return m.d > now end

-- A reply row: id, body, checksum, created, expires, live claim id or '', claim count.
local function row(id, m, now)
  local ci = m.ci
  if m.ce <= now then ci = '' end
  return {id, m.b, m.h, m.c, m.e, ci, m.n, m.s or ''}
end

-- cmd on key with the elements of flat appended, in calls of at most 400 elements
-- (one call instead of one per member; bounded to stay within Lua's stack).
local function call_all(cmd, key, flat)
  for i = 1, #flat, 400 do
    redis.call(cmd, key, unpack(flat, i, math.min(i + 399, #flat)))
  end
end

-- Adds n to the body bytes ('b') of queue k.
local function count_bytes(k, n)
  if n ~= 0 then redis.call('HINCRBY', k.q, 'b', int(n)) end
end

-- The bytes of the bodies of the messages ids of queue k, as stored (expired or not).
local function stored_bytes(k, ids)
  local n = 0
  for i = 1, #ids, 400 do
    local values = redis.call('HMGET', k.msg, unpack(ids, i, math.min(i + 399, #ids)))
    for j = 1, #values do
      if values[j] then
        local _, _, _, _, _, _, _, _, _, b = cmsgpack.unpack(values[j])
        n = n + #b
      end
    end
  end
  return n
end

-- Before messages are added to queue k: with no message left (its keys emptied, or
-- expired together, see keep()), its body bytes start again from 0. exp and msg hold
-- the same messages, so a caller that knows msg is missing says so with `empty`.
local function bytes_from_empty(k, empty)
  if empty == nil then empty = redis.call('EXISTS', k.exp) == 0 end
  if empty then redis.call('HDEL', k.q, 'b') end
end

-- Removes the data of messages (a list of ids, which may repeat one) of queue k,
-- counting their bytes out: each message's once, and none for one already gone.
local function drop_data(k, ids)
  if #ids == 0 then return end
  local seen, unique = {}, {}
  for _, id in ipairs(ids) do
    if not seen[id] then
      seen[id] = true
      unique[#unique + 1] = id
    end
  end
  count_bytes(k, -stored_bytes(k, unique))
  call_all('HDEL', k.msg, unique)
end

-- Removes messages (a list of ids) from queue k: their data and every index entry.
local function forget(k, ids)
  drop_data(k, ids)
  for _, key in ipairs({k.fre, k.hld, k.lat, k.exp, k.clm, k.dly}) do
    call_all('ZREM', key, ids)
  end
end

-- Removes messages met in fre (which are in no other index than exp).
local function forget_free(k, ids)
  drop_data(k, ids)
  call_all('ZREM', k.fre, ids)
  call_all('ZREM', k.exp, ids)
end

-- Removes messages held by a live claim (in hld, clm and exp), whose bodies the
-- caller read: bytes is their length in all (each message's once).
local function forget_held(k, ids, bytes)
  if #ids == 0 then return end
  count_bytes(k, -bytes)
  call_all('HDEL', k.msg, ids)
  call_all('ZREM', k.hld, ids)
  call_all('ZREM', k.clm, ids)
  call_all('ZREM', k.exp, ids)
end

-- Notes that n messages of queue k were removed because they expired; the
-- expiry sweep (expired.lua) takes the count.
local function count_expired(k, n)
  if n > 0 then redis.call('HINCRBY', k.q, 'xn', n) end
end

-- Removes up to n expired messages of queue k, the oldest expiry first.
local function sweep(k, now, n)
  local ids = redis.call('ZRANGEBYSCORE', k.exp, '-inf', now, 'LIMIT', 0, n)
  forget(k, ids)
  count_expired(k, #ids)
end

-- After messages expiring at the latest at e were written to the given message
-- keys of queue k: every message key lives until the queue's 'x' (x when the
-- caller read it already), which moves to KEEP past e when e is later.
-- A key emptied and written anew has no expiry, so callers pass the keys they
-- may have created.
local function keep(k, e, written, x)
  x = x or tonumber(redis.call('HGET', k.q, 'x') or 0)
  if e <= 0 and x <= 0 then return end -- no lifetime known: never expire a key at once
  if e > x then
    x = e + KEEP
    redis.call('HSET', k.q, 'x', int(x))
    written = {k.fre, k.hld, k.lat, k.exp, k.clm, k.dly, k.msg}
  end
  for _, key in ipairs(written) do redis.call('PEXPIREAT', key, int(x)) end
end

-- Appends message id (m, already expiring at m.e, neither claimed nor delayed)
-- to queue k; returns its seq.
local function add(k, id, m)
  local seq = redis.call('HINCRBY', k.q, 'seq', 1)
  bytes_from_empty(k)
  count_bytes(k, #m.b)
  redis.call('HSET', k.msg, id, encode(m))
  redis.call('ZADD', k.fre, seq, id)
  redis.call('ZADD', k.exp, int(m.e), id)
  keep(k, m.e, {k.fre, k.exp, k.msg})
  return seq
end

-- Returns to fre up to PROMOTE messages of queue k whose claim has ended, and
-- up to PROMOTE whose delay has passed (or who expired: scans drop those).
local function promote(k, now)
  local moved = false
  for _, index in ipairs({{k.clm, k.hld}, {k.dly, k.lat}}) do
    local due = redis.call('ZRANGEBYSCORE', index[1], '-inf', now, 'LIMIT', 0, PROMOTE)
    if #due > 0 then
      local seqs = redis.call('ZMSCORE', index[2], unpack(due))
      local by_seq = {}
      for i = 1, #due do
        if seqs[i] then by_seq[#by_seq + 1], by_seq[#by_seq + 2] = seqs[i], due[i] end
      end
      redis.call('ZREM', index[1], unpack(due))
      redis.call('ZREM', index[2], unpack(due))
      if #by_seq > 0 then
        redis.call('ZADD', k.fre, unpack(by_seq))
        moved = true
      end
    end
  end
  if moved then keep(k, 0, {k.fre}) end
end

-- Calls visit(id, seq, m) on the messages of queue k in the given indexes
-- (fre, hld, lat) with after < seq <= upto, oldest first, until visit returns
-- true or BUDGET entries were visited; m is the live message, or nil when it is
-- gone or expired. Ranges by score, so visit may remove ids as it goes.
-- Reads `want` ids per index first (what the caller expects to need), then
-- twice as many each time, up to 100: turning a reply into Lua values costs
-- more than the range itself, so a short scan reads little. Several indexes
-- are merged by seq up to the lowest last seq of an index that had more.
-- Returns the seq of the last entry visited (after when none) and whether the
-- budget ran out before the end.
local function scan(k, indexes, after, upto, visit, want, now)
  local last, size, budget = after, math.max(want, 1), BUDGET
  while true do
    local entries, horizon = {}, nil
    for _, key in ipairs(indexes) do
      local batch = redis.call('ZRANGEBYSCORE', key, '(' .. int(last), upto,
                               'WITHSCORES', 'LIMIT', 0, size)
      for i = 1, #batch, 2 do entries[#entries + 1] = {batch[i], tonumber(batch[i + 1])} end
      if #batch == 2 * size then
        local top = tonumber(batch[#batch])
        if not horizon or top < horizon then horizon = top end
      end
    end
    if #indexes > 1 then table.sort(entries, function(a, b) return a[2] < b[2] end) end
    local ids = {}
    for i = 1, math.min(#entries, budget) do
      if horizon and entries[i][2] > horizon then break end
      ids[i] = entries[i][1]
    end
    local found = load_all(k, ids, now)
    for i = 1, #ids do
      last = entries[i][2]
      if visit(ids[i], last, found[i]) then return last, false end
    end
    budget = budget - #ids
    if not horizon and #ids == #entries then return last, false end
    if budget <= 0 then return last, true end
    size = math.min(size * 2, 100)
  end
end

-- The messages of claim cid among its comma-separated ids that it still holds,
-- as {id, m} pairs.
local function held(k, ids, cid, now)
  local list = {}
  for id in string.gmatch(ids or '', '[^,]+') do list[#list + 1] = id end
  local found = load_all(k, list, now)
  local out = {}
  for i = 1, #list do
    local m = found[i]
    if m and m.ci == cid and m.ce > now then out[#out + 1] = {list[i], m} end
  end
  return out
end

-- The fields of the live claim at ckey of queue k (nil when it expired, was
-- released, or its queue was purged since).
local function live_claim(ckey, k, now, ...)
  local f = redis.call('HMGET', ckey, 'e', 'g', ...)
  if not f[1] or tonumber(f[1]) <= now then return nil end
  if (f[2] or '0') ~= (redis.call('HGET', k.q, 'g') or '0') then return nil end
  return f
end

-- A subscription is a hash at <subscription prefix><id> that Redis expires at 'e':
--   u subscriber, t ttl s, c created ms, e expires ms, o options JSON, f confirmed (1/0).
-- Its reply row (id, subscriber, ttl, created, options, confirmed), or nil when gone.
local function sub_row(skey, id, now)
  local f = redis.call('HMGET', skey, 'u', 't', 'c', 'e', 'o', 'f')
  local e = tonumber(f[4])
  if not e or e <= now then return nil end
  return {id, f[1], tonumber(f[2]), tonumber(f[3]), f[5], tonumber(f[6])}
end
