-- Helpers prepended to every script of the redis store.
--
-- A queue is six keys, passed as KEYS[i .. i+5] and read with queue_keys(i):
--   q   hash: 'meta' (metadata JSON), 'seq' (last message sequence number),
--       'x' (ms until which the five message keys below live)
--   ids zset: message id -> seq (posting order, the listing marker)
--   exp zset: message id -> expiry (ms)
--   clm zset: message id -> claim expiry (ms), for claimed messages
--   dly zset: message id -> min(delay end, expiry) (ms), for delayed messages
--   msg hash: message id -> the message, packed by encode()
-- A message has: e expires ms, d delay end ms (0: none), ci claim id ('' none),
-- ce claim expires ms, n claim count, k client id, t ttl s as posted, c created ms,
-- h checksum, b body.
-- Every time is the server clock (TIME) in ms; a thing is live while its
-- expiry is > now. Expired messages are removed lazily: by the scans that meet
-- them, by every post (a few of the oldest expired) and by stats; the message
-- keys themselves expire a minute after the last message in them (see keep()),
-- so a queue nobody touches any more leaves nothing behind but its record.

if redis.replicate_commands then redis.replicate_commands() end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An integer as Redis should get it (a Lua number is formatted with '%.17g',
-- which costs more than the command it is passed to).
local function int(n) return string.format('%d', n) end

local function queue_keys(i)
  return {q = KEYS[i], ids = KEYS[i + 1], exp = KEYS[i + 2], clm = KEYS[i + 3],
          dly = KEYS[i + 4], msg = KEYS[i + 5]}
end

local function encode(m)
  return cmsgpack.pack(m.e, m.d, m.ci, m.ce, m.n, m.k, m.t, m.c, m.h, m.b)
end

-- The message packed in v, or nil when v is missing or the message expired.
local function decode(v, now)
  if not v then return nil end
  local e, d, ci, ce, n, k, t, c, h, b = cmsgpack.unpack(v)
  if e <= now then return nil end
  return {e = e, d = d, ci = ci, ce = ce, n = n, k = k, t = t, c = c, h = h, b = b}
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
  return {id, m.b, m.h, m.c, m.e, ci, m.n}
end

-- cmd on key with the elements of flat appended, in calls of at most 400 elements
-- (one call instead of one per member; bounded to stay within Lua's stack).
local function call_all(cmd, key, flat)
  for i = 1, #flat, 400 do
    redis.call(cmd, key, unpack(flat, i, math.min(i + 399, #flat)))
  end
end

-- Removes messages (a list of ids) from queue k: their data and every index entry.
local function forget(k, ids)
  call_all('HDEL', k.msg, ids)
  call_all('ZREM', k.ids, ids)
  call_all('ZREM', k.exp, ids)
  call_all('ZREM', k.clm, ids)
  call_all('ZREM', k.dly, ids)
end

-- Removes up to n expired messages of queue k, the oldest expiry first.
local function sweep(k, now, n)
  forget(k, redis.call('ZRANGEBYSCORE', k.exp, '-inf', now, 'LIMIT', 0, n))
end

-- After messages expiring at the latest at e were written to the given message
-- keys of queue k: every message key lives until the queue's 'x' (x when the
-- caller read it already), which moves to a minute past e when e is later.
-- A key emptied and written anew has no expiry, so callers pass the keys they
-- may have created.
local function keep(k, e, written, x)
  x = x or tonumber(redis.call('HGET', k.q, 'x') or 0)
  if e > x then
    x = e + 60000
    redis.call('HSET', k.q, 'x', int(x))
    written = {k.ids, k.exp, k.clm, k.dly, k.msg}
  end
  for _, key in ipairs(written) do redis.call('PEXPIREAT', key, int(x)) end
end

-- Appends message id (m, already expiring at m.e) to queue k; returns its seq.
local function add(k, id, m)
  local seq = redis.call('HINCRBY', k.q, 'seq', 1)
  redis.call('HSET', k.msg, id, encode(m))
  redis.call('ZADD', k.ids, seq, id)
  redis.call('ZADD', k.exp, int(m.e), id)
  keep(k, m.e, {k.ids, k.exp, k.msg})
  return seq
end

-- Calls visit(id, seq, m) on the ids of queue k with after < seq <= upto,
-- oldest first, until visit returns true; m is the live message, or nil when
-- it is gone or expired. Ranges by score, so visit may remove ids as it goes.
-- Reads `want` ids first (what the caller expects to need), then twice as many
-- each time, up to 100: turning a reply into Lua values costs more than the
-- range itself, so a short scan reads little.
local function scan(k, after, upto, visit, want, now)
  local lo, size = '(' .. after, math.max(want, 1)
  while true do
    local batch = redis.call('ZRANGEBYSCORE', k.ids, lo, upto, 'WITHSCORES', 'LIMIT', 0, size)
    if #batch == 0 then return end
    local ids = {}
    for i = 1, #batch, 2 do ids[#ids + 1] = batch[i] end
    local found = load_all(k, ids, now)
    for i = 1, #ids do
      if visit(ids[i], tonumber(batch[2 * i]), found[i]) then return end
    end
    lo, size = '(' .. batch[#batch], math.min(size * 2, 100)
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

-- A subscription is a hash at <subscription prefix><id> that Redis expires at 'e':
--   u subscriber, t ttl s, c created ms, e expires ms, o options JSON, f confirmed (1/0).
-- Its reply row (id, subscriber, ttl, created, options, confirmed), or nil when gone.
local function sub_row(skey, id, now)
  local f = redis.call('HMGET', skey, 'u', 't', 'c', 'e', 'o', 'f')
  local e = tonumber(f[4])
  if not e or e <= now then return nil end
  return {id, f[1], tonumber(f[2]), tonumber(f[3]), f[5], tonumber(f[6])}
end

-- ---------------------------------------------------------------- script
