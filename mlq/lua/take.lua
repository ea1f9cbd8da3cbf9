-- Start up to `count` jobs on a worker: each is moved from the first non-empty
-- queue list (queues in the worker's order of preference, highest priority
-- first) into the worker's processing list. A batch is one atomic step.
-- After the plain lists come the owners' lists of each queue: the owner ring is
-- walked from its head, or rotated one step per take when sharing fairly, and an
-- owner at the per-owner limit of running jobs is passed over.
-- KEYS[1] worker's processing list   KEYS[2] running zset
-- KEYS[3] registry sequence (returned so the worker notices new listeners at no cost)
-- KEYS[4] owner -> running count hash   KEYS[5] index of queued ids   KEYS[6] of started ids
-- KEYS[7 .. 6+ARGV[10]] plain queue lists, in the order to take from
-- KEYS[7+ARGV[10] ..] owner rings, one per queue, in the same order as ARGV[11..]
-- ARGV[1] job key prefix   ARGV[2] worker id   ARGV[3] now (epoch seconds)
-- ARGV[4] namespace events channel   ARGV[5] job channel prefix
-- ARGV[6] '1' to hand over strays first (see below)   ARGV[7] count
-- ARGV[8] '1' to share fairly between owners   ARGV[9] per-owner running limit (0: none)
-- ARGV[10] number of plain lists   ARGV[11..] each queue's owner list prefix, then the
-- number of priority levels per queue
-- Returns {registry sequence, {field, value, ...}, ...}: one flat record per started
-- job, or false when nothing was started (empty queue, or ids whose records are
-- gone or not queued).
local now = tonumber(ARGV[3])
local count = tonumber(ARGV[7] or '1')
local answer = {redis.call('GET', KEYS[3]) or '0'}
local fair = ARGV[8] == '1'
local limit = tonumber(ARGV[9] or '0')
local plain = tonumber(ARGV[10] or '0')

local function start(id)
  local job_key = ARGV[1] .. id
  local current = redis.call('HMGET', job_key, 'status', 'attempt', 'owner')
  local status, attempt_raw, owner = current[1], current[2], current[3]
  if not status or cmsgpack.unpack(status) ~= 'queued' then
    -- purged, cancelled or cleared while queued: drop the stray id, nothing to run
    redis.call('LREM', KEYS[1], 1, id)
    return
  end
  local attempt = 1
  if attempt_raw then attempt = (cmsgpack.unpack(attempt_raw) or 0) + 1 end
  redis.call('HSET', job_key,
    'status', cmsgpack.pack('started'),
    'worker', cmsgpack.pack(ARGV[2]),
    'processing_started', cmsgpack.pack(now),
    'processing_finished', cmsgpack.pack(nil),
    'progress', cmsgpack.pack(0),
    'attempt', cmsgpack.pack(attempt))
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('ZREM', KEYS[5], id)
  redis.call('ZADD', KEYS[6], id, id)
  if owner then
    owner = cmsgpack.unpack(owner)
    if owner then redis.call('HINCRBY', KEYS[4], owner, 1) end
  end
  local event = cmsgpack.pack({id, 'started', 0})
  redis.call('PUBLISH', ARGV[4], event)
  redis.call('PUBLISH', ARGV[5] .. id, event)
  answer[#answer + 1] = redis.call('HGETALL', job_key)
end

-- When a worker takes while idle, anything already in its processing list is a
-- stray: an earlier take whose reply was lost to a dropped connection (and
-- re-sent by the client), or an id moved there and never started. Hand those
-- over first instead of stranding them.
local strays = {}
if ARGV[6] == '1' then strays = redis.call('LRANGE', KEYS[1], 0, -1) end
for _, id in ipairs(strays) do
  if count <= 0 then break end
  local current = redis.call('HMGET', ARGV[1] .. id, 'status', 'worker')
  if current[1] and cmsgpack.unpack(current[1]) == 'started'
      and cmsgpack.unpack(current[2] or cmsgpack.pack(nil)) == ARGV[2] then
    answer[#answer + 1] = redis.call('HGETALL', ARGV[1] .. id)
    count = count - 1
  else
    start(id)
    count = count - 1
  end
end
-- The plain lists come in groups of `levels` per queue, highest priority first
-- and the default level last. Empty lists do not exist in Redis, so one EXISTS
-- tells whether any higher level holds a job (the common case: none).
local levels = tonumber(ARGV[11 + (#KEYS - 6 - plain)] or '1')
local function take_from(lane)
  while count > 0 do
    local id = redis.call('LMOVE', KEYS[lane], KEYS[1], 'RIGHT', 'LEFT')
    if not id then return end
    start(id)
    count = count - 1
  end
end
local first = 7
while count > 0 and first <= 6 + plain do
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
    local running = tonumber(redis.call('HGET', KEYS[4], owner) or '0')
    if limit == 0 or running < limit then
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

for i = 1, #KEYS - 6 - plain do
  if count <= 0 then break end
  take_owned(KEYS[6 + plain + i], ARGV[10 + i])
end
if #answer == 1 then return false end
return answer
