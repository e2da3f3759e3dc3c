-- Deletes messages in groups, each group all or none following its claim rules;
-- the groups of several deletes go in one call (group commit): their messages are
-- read with one HMGET and the accepted ones removed with one call per index.
-- KEYS: queue (1..8). ARGV: per group: mode, number of ids n, number of claim
-- ids c, n ids, c claim ids.
-- mode 'any': claims do not matter; 'held': a claimed message must be held
-- by one of the claim ids; 'own': every message must be held by one of them.
-- Returns per group '' when done, else the id of a message the rule refuses
-- (nothing of that group is deleted then). Groups are judged on the messages as
-- they were before the call, as if each ran before the others.
local k = queue_keys(1)
local now = now_ms()

local groups, checked = {}, {}
local i = 1
while i <= #ARGV do
  local mode, n, c = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local group = {mode = mode, first = #checked + 1, ids = {}, claims = {}}
  for j = i + 3, i + 2 + n do
    group.ids[#group.ids + 1] = ARGV[j]
    if mode ~= 'any' then checked[#checked + 1] = ARGV[j] end
  end
  for j = i + 3 + n, i + 2 + n + c do group.claims[ARGV[j]] = true end
  groups[#groups + 1] = group
  i = i + 3 + n + c
end

local found = load_all(k, checked, now)
-- The held messages to remove (each once) and their bodies' bytes, the others.
local refused, held, held_bytes, counted, others = {}, {}, 0, {}, {}
for g, group in ipairs(groups) do
  local verdict = ''
  if group.mode == 'any' then
    for _, id in ipairs(group.ids) do others[#others + 1] = id end
  else
    local group_held, group_others = {}, {}
    for j, id in ipairs(group.ids) do
      local m = found[group.first + j - 1]
      local claimed = m and is_claimed(m, now)
      if m and ((claimed and not group.claims[m.ci]) or (group.mode == 'own' and not claimed)) then
        verdict = id
        break
      end
      if claimed then
        group_held[#group_held + 1] = {id, m}
      else
        group_others[#group_others + 1] = id
      end
    end
    if verdict == '' then
      for _, pair in ipairs(group_held) do
        local id, m = pair[1], pair[2]
        if not counted[id] then
          counted[id] = true
          held[#held + 1] = id
          held_bytes = held_bytes + #m.b
        end
      end
      for _, id in ipairs(group_others) do others[#others + 1] = id end
    end
  end
  refused[g] = verdict
end
forget_held(k, held, held_bytes)
forget(k, others)
return refused
