-- Claims up to limit free messages, oldest first. A message already claimed
-- max times moves to the dead letter queue instead (same id, claim count kept,
-- created now, living the dead letter ttl or its own posted ttl).
-- KEYS: queue (1..5), dead letter queue (6..10), claim hash (11).
-- ARGV: message prefix, dead letter message prefix, claim id, ttl s, grace s,
-- limit, max claim count (0: no dead lettering), dead letter ttl s (0: own).
-- Returns {now, rows}; the claim hash ('t' ttl s, 'e' expires ms, 'ids') is
-- written only when something was claimed.
local k, dk, ckey = queue_keys(1), queue_keys(6), KEYS[11]
local prefix, dprefix, cid = ARGV[1], ARGV[2], ARGV[3]
local ttl, grace, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local max, dttl = tonumber(ARGV[7]), tonumber(ARGV[8])
local now = now_ms()
local cexp = now + ttl * 1000
local mexp = cexp + grace * 1000
-- Only messages present at the start: one moved to the end of this very
-- queue (a queue that is its own dead letter queue) is not seen twice.
local top = tonumber(redis.call('HGET', k.q, 'seq') or 0)
local ids, rows = {}, {}
-- (score, id) pairs of the claimed messages for the exp and clm indexes.
local by_expiry, by_claim = {}, {}

local function dead_letter(mkey, id, m)
  local dkey = dprefix .. id
  local e = now + (dttl > 0 and dttl or m.t) * 1000
  unindex(k, id)
  redis.call('RENAME', mkey, dkey)
  redis.call('HSET', dkey, 'c', now, 'e', e, 'd', 0, 'ci', '', 'ce', 0)
  redis.call('PEXPIREAT', dkey, e)
  redis.call('HSETNX', dk.q, 'meta', '{}')
  index(dk, id, e, 0, now)
end

if limit > 0 then
  scan(k, 0, top, function(id)
    local mkey = prefix .. id
    local m, shown = load_with_row(mkey, id, now)
    if not m then
      unindex(k, id)
    elseif is_claimed(m, now) or is_delayed(m, now) then
      -- not free
    elseif max > 0 and m.n >= max then
      dead_letter(mkey, id, m)
    else
      local e = math.max(m.e, mexp)
      redis.call('HSET', mkey, 'ci', cid, 'ce', cexp, 'n', m.n + 1, 'e', e)
      redis.call('PEXPIREAT', mkey, e)
      by_expiry[#by_expiry + 1], by_expiry[#by_expiry + 2] = e, id
      by_claim[#by_claim + 1], by_claim[#by_claim + 2] = cexp, id
      ids[#ids + 1] = id
      -- The row as row() would read it back after the HSET above.
      shown[5], shown[6], shown[7] = e, cexp > now and cid or '', m.n + 1
      rows[#rows + 1] = shown
    end
    return #ids >= limit
  end, limit)
end
zadd_all(k.exp, by_expiry)
zadd_all(k.clm, by_claim)
if #ids > 0 then
  redis.call('HSET', ckey, 't', ttl, 'e', cexp, 'ids', table.concat(ids, ','))
  redis.call('PEXPIREAT', ckey, cexp)
end
return {now, rows}
