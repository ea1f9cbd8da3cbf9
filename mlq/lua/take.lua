-- Start up to `count` jobs on a worker: each is moved from the first non-empty
-- queue list (queues in the worker's order of preference, highest priority
-- first) into the worker's processing list. A batch is one atomic step.
-- After the plain lists come the owners' lists of each queue: the owner ring is
-- walked from its head, or rotated one step per take when sharing fairly, and an
-- owner at the per-owner limit of running jobs is passed over.
-- KEYS[1] worker's processing list   KEYS[2] running zset
-- KEYS[3] registry sequence (returned so the worker notices new listeners at no cost)
-- KEYS[4] owner -> running count hash   KEYS[5] the worker's inbox (see post.lua)
-- KEYS[6] the worker's idle flag, for a worker on several queues: a post hands over
-- one job per time it is set (post.lua)
-- KEYS[7 .. 6+plain] plain queue lists, `levels` per queue, in the order to take from
-- then per queue (same order) an owner ring, then a wake list, then an idle-workers zset
-- ARGV[1] job key prefix   ARGV[2] worker id   ARGV[3] now (epoch seconds)
-- ARGV[4] job channel prefix
-- ARGV[5] mode, one letter per option (Scripts.take):
--   's' hand over strays first (see below)   'f' share fairly between owners
--   'i' the worker was waiting as idle; it is not any more
--   'o' hand over strays only, take nothing new (a worker that stops)
-- ARGV[6] count   ARGV[7] per-owner running limit (0: none)
-- ARGV[8] number of plain lists   ARGV[9] priority levels per queue
-- ARGV[10] when nothing is started, the worker goes on to wait as idle for this many
-- milliseconds ('0': it does not): its claim lapses unless a take renews it, so a
-- post never hands a job to a worker that died while idle
-- ARGV[11..] each queue's owner list prefix, then each queue's name
-- KEYS[last - 5 .. last] the scheduled set, the deadlines set, the paused set, the
-- periodic jobs' next slots, the namespace's key prefix (lifecycle.lua), and the key
-- that exists once the registry changed after the sequence this worker loaded
-- (Keys.registry_changed)
-- Before taking, due scheduled jobs move to their queues and late ones expire
-- (move_due): any worker's take does it for every queue.
-- Returns {registry sequence, {field, value, ...}, ...}: one flat record per started
-- job. When nothing was started (empty or paused queues, or ids whose records are
-- gone or not queued): when the next scheduled job is due (a string), or false
-- when none is; or {registry sequence} alone when the worker's listeners are out
-- of date: it does not wait as idle, since a post hands it a job without a
-- sequence (post.lua), and it loads them before it takes again.
local now = tonumber(ARGV[3])
local count = tonumber(ARGV[6])
-- the registry sequence goes first, read only when a job is started
local answer = {false}
local function mode(letter) return string.find(ARGV[5], letter, 1, true) ~= nil end
local fair = mode('f')
local strays_only = mode('o')
local limit = tonumber(ARGV[7])
local plain = tonumber(ARGV[8])
local levels = tonumber(ARGV[9])
local queues = (#ARGV - 10) / 2
local P = KEYS[#KEYS - 1]
local registry_changed = KEYS[#KEYS]
local rings = 6 + plain
local wakes = rings + queues
local idles = wakes + queues
local running = {}

-- An idle worker may have been handed jobs by posts (post.lua): they are in its
-- processing list, so the strays below hand them over; the inbox only announced them.
if mode('i') then
  redis.call('DEL', KEYS[5], KEYS[6])
  for i = 1, queues do redis.call('ZREM', KEYS[idles + i], ARGV[2], '+' .. ARGV[2]) end
end

-- The common case when a worker runs out of work: no stray, nothing scheduled,
-- nothing with a deadline, no pause, no periodic job, and every list empty. One
-- EXISTS over all of them tells; otherwise each is looked at below.
local scheduled, expiring, paused_set = KEYS[#KEYS - 5], KEYS[#KEYS - 4], KEYS[#KEYS - 3]
local slots = KEYS[#KEYS - 2]
local probe = {scheduled, expiring, paused_set, slots, registry_changed}
if mode('s') then probe[#probe + 1] = KEYS[1] end
if count > 0 and not strays_only then
  for k = 7, wakes do probe[#probe + 1] = KEYS[k] end
end
local nothing = redis.call('EXISTS', unpack(probe)) == 0
local waiting_otherwise, any_slots = 0, false
if not nothing then
  waiting_otherwise = redis.call('EXISTS', scheduled, expiring, paused_set, slots)
  if waiting_otherwise > 0 then
    local others = redis.call('EXISTS', scheduled, expiring, paused_set)
    any_slots = others < waiting_otherwise
    waiting_otherwise = others
  end
end
if waiting_otherwise > 0 and not strays_only then lifecycle().move_due(P, now, 1000) end
-- a paused queue is passed over: its lists, its owners' lists, its wake list
local paused = {}
if waiting_otherwise > 0 and redis.call('EXISTS', paused_set) == 1 then
  for i = 1, queues do
    paused[i] = redis.call('SISMEMBER', paused_set, ARGV[10 + queues + i]) == 1
  end
end

local function start(id)
  local flat = start_job(P, ARGV[1] .. id, id, ARGV[2], now, KEYS[1], KEYS[4], ARGV[4])
  if flat then
    running[#running + 1] = now
    running[#running + 1] = id
    answer[#answer + 1] = flat
  end
end

-- When a worker takes while idle, anything already in its processing list is a
-- stray: an earlier take whose reply was lost to a dropped connection (and
-- re-sent by the client), or an id moved there and never started. Hand those
-- over first instead of stranding them.
local strays = {}
if mode('s') and not nothing then strays = redis.call('LRANGE', KEYS[1], 0, -1) end
for _, id in ipairs(strays) do
  if count <= 0 then break end
  local current = redis.call('HMGET', ARGV[1] .. id, 'status', 'worker')
  if current[1] and cmsgpack.unpack(current[1]) == 'started'
      and cmsgpack.unpack(current[2] or cmsgpack.pack(nil)) == ARGV[2] then
    answer[#answer + 1] = redis.call('HGETALL', ARGV[1] .. id)
  else
    start(id)
  end
  count = count - 1
end

-- A batch leaves its list in one LMPOP and enters the processing list in one LPUSH.
local function take_from(lane)
  if count <= 0 then return end
  local popped = redis.call('LMPOP', 1, KEYS[lane], 'RIGHT', 'COUNT', count)
  if not popped then return end
  local ids = popped[2]
  redis.call('LPUSH', KEYS[1], unpack(ids))
  count = count - #ids
  for _, id in ipairs(ids) do start(id) end
end

-- The plain lists come in groups of `levels` per queue, highest priority first
-- and the default level last. Empty lists do not exist in Redis, so one EXISTS
-- tells whether any higher level holds a job (the common case: none).
if strays_only then count = 0 end
-- the common case when idle: every list is empty, which one EXISTS tells
local queued = count > 0 and not nothing and redis.call('EXISTS', unpack(KEYS, 7, wakes)) > 0
local first = 7
local group = 1
while queued and count > 0 and first <= 6 + plain do
  local last = first + levels - 1
  if not paused[group] then
    if levels > 1 and redis.call('EXISTS', unpack(KEYS, first, last - 1)) > 0 then
      for lane = first, last - 1 do take_from(lane) end
    end
    take_from(last)
  end
  first = last + 1
  group = group + 1
end

local function take_owned(ring, prefix)
  local tries = redis.call('LLEN', ring)
  local index = 0
  while count > 0 and tries > 0 do
    tries = tries - 1
    local owner
    if fair then
      owner = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
    else
      owner = redis.call('LINDEX', ring, index)
      index = index + 1
    end
    if not owner then return end
    local list = prefix .. owner
    local busy = tonumber(redis.call('HGET', KEYS[4], owner) or '0')
    if limit == 0 or busy < limit then
      local id = redis.call('LMOVE', list, KEYS[1], 'RIGHT', 'LEFT')
      if id then
        start(id)
        count = count - 1
        if fair then tries = redis.call('LLEN', ring) end
      end
    end
    if redis.call('LLEN', list) == 0 then
      redis.call('LREM', ring, 0, owner)
      if not fair then index = index - 1 end
    end
  end
end

for i = 1, queues do
  if not queued or count <= 0 then break end
  if not paused[i] then take_owned(KEYS[rings + i], ARGV[10 + i]) end
end

if #running > 0 then redis.call('ZADD', KEYS[2], unpack(running)) end
-- A post wakes a worker only when it finds its list empty. A take that filled
-- its count may have left work behind: wake one more worker for it, so a burst
-- spreads over idle workers (each woken one passes the wake on in turn).
if count <= 0 and not strays_only then
  for i = 1, queues do
    local lanes_from = 7 + (i - 1) * levels
    if not paused[i]
        and redis.call('EXISTS', KEYS[rings + i], unpack(KEYS, lanes_from, lanes_from + levels - 1)) > 0
        and redis.call('EXISTS', KEYS[wakes + i]) == 0 then
      redis.call('LPUSH', KEYS[wakes + i], 1)
    end
  end
end
local out_of_date = #answer == 1 and not nothing and redis.call('EXISTS', registry_changed) == 1
if #answer == 1 and not out_of_date then
  -- nothing to do: from now on a post may hand its job straight to this worker
  local idle_ms = tonumber(ARGV[10])
  if idle_ms > 0 then
    -- scored by when the claim lapses; a worker on one queue needs no flag, so
    -- its name has no '+' (names have none)
    local member = ARGV[2]
    if queues > 1 then
      redis.call('SET', KEYS[6], 1, 'PX', idle_ms)
      member = '+' .. ARGV[2]
    end
    for i = 1, queues do
      -- a paused queue keeps its jobs (post.lua): it has no idle workers
      if not paused[i] then redis.call('ZADD', KEYS[idles + i], now + idle_ms / 1000, member) end
    end
  end
  -- the next scheduled job or periodic slot: a worker's sweep fires the slots
  local due = nil
  local due_sets = {}
  -- the EXISTS above said whether anything is scheduled
  if any_slots then due_sets[1] = slots end
  if waiting_otherwise > 0 then due_sets[#due_sets + 1] = scheduled end
  for _, key in ipairs(due_sets) do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if first[2] and (not due or tonumber(first[2]) < due) then due = tonumber(first[2]) end
  end
  if not due then return false end
  return tostring(due)
end
answer[1] = redis.call('GET', KEYS[3]) or '0'
return answer
