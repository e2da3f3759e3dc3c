-- Claims up to limit free messages, oldest first. A message already claimed
-- max times moves to the dead letter queue instead (same id, claim count kept,
-- created now, living the dead letter ttl or its own posted ttl, noting the
-- queue's name as its source).
-- In a Redis Cluster the dead letter queue is in another slot: with park '1' such
-- a message goes to the queue's parked zset instead (score: its seq, member: the
-- id and the message ready for the dead letter queue, packed together), which
-- dead_letter_put.lua adds to it next, in order.
-- KEYS: queue (1..8), dead letter queue (9..16), claim hash (17), parked zset (18).
-- ARGV: claim id, ttl s, grace s, limit, max claim count (0: no dead lettering),
-- dead letter ttl s (0: own), park, the queue's name.
-- Returns {now, rows, parked, moved}; the claim hash ('t' ttl s, 'e' expires ms, 'g'
-- the queue's claim generation, 'ids') is written only when something was claimed;
-- parked is how many messages the parked zset holds, moved how many went to the
-- dead letter queue in this call (parked ones excluded).
local k, dk, ckey, parked = queue_keys(1), queue_keys(9), KEYS[17], KEYS[18]
local cid = ARGV[1]
local ttl, grace, limit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local max, dttl, park = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1'
local source = ARGV[8]
local now = now_ms()
local cexp = now + ttl * 1000
local mexp = cexp + grace * 1000
-- Only messages present at the start: one moved to the end of this very
-- queue (a queue that is its own dead letter queue) is not seen twice.
local record = redis.call('HMGET', k.q, 'seq', 'x', 'g')
local top = tonumber(record[1] or 0)
local ids, rows, gone = {}, {}, {}
-- The claimed messages, and (score, id) pairs for the hld, exp and clm indexes.
local by_id, by_seq, by_expiry, by_claim = {}, {}, {}, {}
local latest = 0
local moved = 0

local function dead_letter(id, seq, m)
  m.e = now + (dttl > 0 and dttl or m.t) * 1000
  m.c, m.d, m.ci, m.ce, m.s = now, 0, '', 0, source
  forget_free(k, {id})
  if park then
    redis.call('ZADD', parked, int(seq), cmsgpack.pack(id, encode(m)))
  else
    redis.call('HSETNX', dk.q, 'meta', '{}')
    add(dk, id, m)
    moved = moved + 1
  end
end

if limit > 0 then
  promote(k, now)
  scan(k, {k.fre}, 0, top, function(id, seq, m)
    if not m then
      gone[#gone + 1] = id
    elseif is_claimed(m, now) or is_delayed(m, now) then
      -- not free (cannot be in fre; skipped all the same)
    elseif max > 0 and m.n >= max then
      dead_letter(id, seq, m)
    else
      m.e = math.max(m.e, mexp)
      m.ci, m.ce, m.n = cid, cexp, m.n + 1
      latest = math.max(latest, m.e)
      by_id[#by_id + 1], by_id[#by_id + 2] = id, encode(m)
      by_seq[#by_seq + 1], by_seq[#by_seq + 2] = int(seq), id
      by_expiry[#by_expiry + 1], by_expiry[#by_expiry + 2] = int(m.e), id
      by_claim[#by_claim + 1], by_claim[#by_claim + 2] = int(cexp), id
      ids[#ids + 1] = id
      rows[#rows + 1] = row(id, m, now)
    end
    return #ids >= limit
  end, limit, now)
end
forget_free(k, gone)
count_expired(k, #gone)
if #ids > 0 then
  call_all('HSET', k.msg, by_id)
  call_all('ZREM', k.fre, ids)
  call_all('ZADD', k.hld, by_seq)
  call_all('ZADD', k.exp, by_expiry)
  call_all('ZADD', k.clm, by_claim)
  -- The queue's 'x' as read first, unless a message went to a dead letter queue
  -- that is this very queue (which moved 'x').
  keep(k, latest, {k.hld, k.clm}, (moved == 0 or dk.q ~= k.q) and tonumber(record[2] or 0) or nil)
  redis.call('HSET', ckey, 't', ttl, 'e', int(cexp), 'g', record[3] or '0',
             'ids', table.concat(ids, ','))
  redis.call('PEXPIREAT', ckey, int(cexp))
end
return {now, rows, park and redis.call('ZCARD', parked) or 0, moved}
