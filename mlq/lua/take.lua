-- Start up to `count` jobs on a worker: each is moved from the first non-empty
-- queue list (queues in the worker's order of preference, highest priority
-- first) into the worker's processing list. A batch is one atomic step.
-- After the plain lists come the owners' lists of each queue: the owner ring is
-- walked from its head, or rotated one step per take when sharing fairly, and an
-- owner at the per-owner limit of running jobs is passed over.
-- KEYS[1] worker's processing list   KEYS[2] running zset
-- KEYS[3] registry sequence (returned so the worker notices new listeners at no cost)
-- KEYS[4] owner -> running count hash
-- KEYS[5 .. 4+plain] plain queue lists, `levels` per queue, in the order to take from
-- then one owner ring per queue, then one wake list per queue (same queue order)
-- ARGV[1] job key prefix   ARGV[2] worker id   ARGV[3] now (epoch seconds)
-- ARGV[4] job channel prefix   ARGV[5] '1' to hand over strays first (see below)
-- ARGV[6] count   ARGV[7] '1' to share fairly between owners
-- ARGV[8] per-owner running limit (0: none)   ARGV[9] number of plain lists
-- ARGV[10] priority levels per queue   ARGV[11..] each queue's owner list prefix
-- Returns {registry sequence, {field, value, ...}, ...}: one flat record per started
-- job, or false when nothing was started (empty queue, or ids whose records are
-- gone or not queued).
local now = tonumber(ARGV[3])
local count = tonumber(ARGV[6])
local answer = {redis.call('GET', KEYS[3]) or '0'}
local fair = ARGV[7] == '1'
local limit = tonumber(ARGV[8])
local plain = tonumber(ARGV[9])
local levels = tonumber(ARGV[10])
local queues = #ARGV - 10
local rings = 4 + plain
local wakes = rings + queues
local running = {}

-- The started record is patched in the HGETALL answer instead of read twice.
local function start(id)
  local job_key = ARGV[1] .. id
  local flat = redis.call('HGETALL', job_key)
  local at = {}
  for i = 1, #flat, 2 do at[flat[i]] = i + 1 end
  if not at.status or cmsgpack.unpack(flat[at.status]) ~= 'queued' then
    -- purged, cancelled or cleared while queued: drop the stray id, nothing to run
    redis.call('LREM', KEYS[1], 1, id)
    return
  end
  local attempt = 1
  if at.attempt then attempt = (cmsgpack.unpack(flat[at.attempt]) or 0) + 1 end
  local changes = {
    'status', cmsgpack.pack('started'),
    'worker', cmsgpack.pack(ARGV[2]),
    'processing_started', cmsgpack.pack(now),
    'processing_finished', cmsgpack.pack(nil),
    'progress', cmsgpack.pack(0),
    'attempt', cmsgpack.pack(attempt)}
  redis.call('HSET', job_key, unpack(changes))
  for i = 1, #changes, 2 do
    local slot = at[changes[i]]
    if slot then
      flat[slot] = changes[i + 1]
    else
      flat[#flat + 1] = changes[i]
      flat[#flat + 1] = changes[i + 1]
    end
  end
  running[#running + 1] = now
  running[#running + 1] = id
  if at.owner then
    local owner = cmsgpack.unpack(flat[at.owner])
    if owner then redis.call('HINCRBY', KEYS[4], owner, 1) end
  end
  redis.call('PUBLISH', ARGV[4] .. id, cmsgpack.pack({id, 'started', 0}))
  answer[#answer + 1] = flat
end

-- When a worker takes while idle, anything already in its processing list is a
-- stray: an earlier take whose reply was lost to a dropped connection (and
-- re-sent by the client), or an id moved there and never started. Hand those
-- over first instead of stranding them.
local strays = {}
if ARGV[5] == '1' then strays = redis.call('LRANGE', KEYS[1], 0, -1) end
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
local first = 5
while count > 0 and first <= 4 + plain do
  local last = first + levels - 1
  if levels > 1 and redis.call('EXISTS', unpack(KEYS, first, last - 1)) > 0 then
    for lane = first, last - 1 do take_from(lane) end
  end
  take_from(last)
  first = last + 1
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
  if count <= 0 then break end
  take_owned(KEYS[rings + i], ARGV[10 + i])
end

if #running > 0 then redis.call('ZADD', KEYS[2], unpack(running)) end
-- A post wakes a worker only when it finds its list empty. A take that filled
-- its count may have left work behind: wake one more worker for it, so a burst
-- spreads over idle workers (each woken one passes the wake on in turn).
if count <= 0 then
  for i = 1, queues do
    local lanes_from = 5 + (i - 1) * levels
    if redis.call('EXISTS', KEYS[rings + i], unpack(KEYS, lanes_from, lanes_from + levels - 1)) > 0
        and redis.call('EXISTS', KEYS[wakes + i]) == 0 then
      redis.call('LPUSH', KEYS[wakes + i], 1)
    end
  end
end
if #answer == 1 then return false end
return answer
