-- Helpers prepended to every script of the redis store.
--
-- A queue is five keys, passed as KEYS[i .. i+4] and read with queue_keys(i):
--   q   hash: 'meta' (metadata JSON), 'seq' (last message sequence number)
--   ids zset: message id -> seq (posting order, the listing marker)
--   exp zset: message id -> expiry (ms)
--   clm zset: message id -> claim expiry (ms), for claimed messages
--   dly zset: message id -> min(delay end, expiry) (ms), for delayed messages
-- A message is a hash at <message prefix><id> that Redis expires at its 'e':
--   b body, h checksum, c created ms, e expires ms, d delay end ms (0: none), k client id,
--   t ttl s as posted, ci claim id ('' none), ce claim expires ms, n claim count.
-- Every time is the server clock (TIME) in ms; a thing is live while its
-- expiry is > now. Index entries of expired messages are removed lazily.

if redis.replicate_commands then redis.replicate_commands() end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function queue_keys(i)
  return {q = KEYS[i], ids = KEYS[i + 1], exp = KEYS[i + 2], clm = KEYS[i + 3], dly = KEYS[i + 4]}
end

-- Removes a message id from every index of queue k.
local function unindex(k, id)
  redis.call('ZREM', k.ids, id)
  redis.call('ZREM', k.exp, id)
  redis.call('ZREM', k.clm, id)
  redis.call('ZREM', k.dly, id)
end

-- Appends message id (expiring at e, delayed until d) to queue k; returns its seq.
local function index(k, id, e, d, now)
  local seq = redis.call('HINCRBY', k.q, 'seq', 1)
  redis.call('ZADD', k.ids, seq, id)
  redis.call('ZADD', k.exp, e, id)
  if d > now then redis.call('ZADD', k.dly, math.min(d, e), id) end
  return seq
end

-- ZADD of many (score, member) pairs, flat in pairs, in calls of at most 200 pairs
-- (one call instead of one per member; bounded to stay within Lua's stack).
local function zadd_all(key, flat)
  for i = 1, #flat, 400 do
    redis.call('ZADD', key, unpack(flat, i, math.min(i + 399, #flat)))
  end
end

-- The state of the live message at mkey, or nil when it is gone or expired.
local function load(mkey, now)
  local f = redis.call('HMGET', mkey, 'e', 'd', 'ci', 'ce', 'n', 'k', 't')
  local e = tonumber(f[1])
  if not e or e <= now then return nil end
  return {e = e, d = tonumber(f[2]), ci = f[3], ce = tonumber(f[4]),
          n = tonumber(f[5]), k = f[6], t = tonumber(f[7])}
end

-- load() and row() of the message at mkey in one read: its state and reply
-- row, or nil when it is gone or expired.
local function load_with_row(mkey, id, now)
  local f = redis.call('HMGET', mkey, 'e', 'd', 'ci', 'ce', 'n', 'k', 't', 'b', 'h', 'c')
  local e = tonumber(f[1])
  if not e or e <= now then return nil end
  local m = {e = e, d = tonumber(f[2]), ci = f[3], ce = tonumber(f[4]),
             n = tonumber(f[5]), k = f[6], t = tonumber(f[7])}
  local ci = m.ci
  if m.ce <= now then ci = '' end
  return m, {id, f[8], f[9], tonumber(f[10]), e, ci, m.n}
end

local function is_claimed(m, now) return m.ci ~= '' and m.ce > now end
local function is_delayed(m, now) return m.d > now end

-- A reply row: id, body, checksum, created, expires, live claim id or '', claim count.
local function row(mkey, id, now)
  local f = redis.call('HMGET', mkey, 'b', 'h', 'c', 'e', 'ci', 'ce', 'n')
  local ci = f[5]
  if tonumber(f[6]) <= now then ci = '' end
  return {id, f[1], f[2], tonumber(f[3]), tonumber(f[4]), ci, tonumber(f[7])}
end

-- Calls visit(id, seq) on the ids of queue k with after < seq <= upto,
-- oldest first, until visit returns true. Ranges by score, so visit may
-- remove ids as it goes. Reads `want` ids first (what the caller expects to
-- need), then twice as many each time, up to 100: turning a reply into Lua
-- values costs more than the range itself, so a short scan reads little.
local function scan(k, after, upto, visit, want)
  local lo, size = '(' .. after, math.max(want, 1)
  while true do
    local batch = redis.call('ZRANGEBYSCORE', k.ids, lo, upto, 'WITHSCORES', 'LIMIT', 0, size)
    if #batch == 0 then return end
    for i = 1, #batch, 2 do
      if visit(batch[i], tonumber(batch[i + 1])) then return end
    end
    lo, size = '(' .. batch[#batch], math.min(size * 2, 100)
  end
end

-- The messages of claim cid among its comma-separated ids that it still holds.
local function held(prefix, ids, cid, now)
  local out = {}
  for id in string.gmatch(ids or '', '[^,]+') do
    local m = load(prefix .. id, now)
    if m and m.ci == cid and m.ce > now then out[#out + 1] = {id, m} end
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
