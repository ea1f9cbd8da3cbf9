-- The body of lifecycle(), put in front of the steps that move a job between
-- its waiting states (queued, scheduled, deferred) or end it, after record.py's
-- tables, lanes.lua and keys.py's key builders (in this body too): a step runs
-- its whole prelude on every call, and most calls need none of this, so it is
-- built once a call first needs it. P is the namespace's key prefix (the
-- step's last KEY).

local function unpacked(value)
  if value then return cmsgpack.unpack(value) end
  return nil
end

-- Put a waiting job in its queue, behind the jobs already there, as a post
-- would. Returns its queue, to be woken once however many jobs joined it.
local function enqueue(P, id, now)
  local record = job_hash(P, id)
  local place = redis.call('HMGET', record, 'queue', 'priority', 'owner')
  local queue = unpacked(place[1])
  local priority = unpacked(place[2]) or 0
  local owner = unpacked(place[3])
  local lane = lane_key(P, queue, priority, owner)
  redis.call('HSET', record, 'status', cmsgpack.pack('queued'), 'next_attempt_at', nil_value,
    'lane_seq', cmsgpack.pack(number_joining(lane, 1)))
  redis.call('LPUSH', lane, id)
  if priority == 0 then join_ring(owners_key(P, queue), owner) end
  redis.call('PUBLISH', channel_key(P, id), cmsgpack.pack({id, 'queued'}))
  return queue
end

-- A job that waits for its time: in the scheduled set until a take moves it.
-- Wakes the queue when it is the next one due, so that a worker blocked for
-- longer wakes in time (Worker.take blocks no longer than the next due time).
local function schedule(P, id, queue, due)
  redis.call('HSET', job_hash(P, id), 'status', cmsgpack.pack('scheduled'),
    'next_attempt_at', cmsgpack.pack(due))
  redis.call('ZADD', scheduled_key(P), due, id)
  local first = redis.call('ZRANGE', scheduled_key(P), 0, 0)
  if first[1] == id then wake(wake_key(P, queue)) end
end

-- A job whose wait ended (its dependencies completed): queued, or scheduled
-- while its own delay has not passed.
local function release(P, id, now)
  local at = unpacked(redis.call('HGET', job_hash(P, id), 'next_attempt_at'))
  if at and at > now then
    schedule(P, id, unpacked(redis.call('HGET', job_hash(P, id), 'queue')), at)
    return nil
  end
  return enqueue(P, id, now)
end

-- A dedup key names its job while the job lives, and for key_ttl seconds after.
local function release_key(P, id, record)
  local kept = redis.call('HMGET', record, 'key', 'key_ttl')
  local key = unpacked(kept[1])
  if not key then return end
  local name = dedup_key(P, key)
  if redis.call('GET', name) ~= id then return end
  local ttl = unpacked(kept[2])
  if ttl and ttl > 0 then
    redis.call('PEXPIRE', name, math.max(math.floor(ttl * 1000), 1))
  else
    redis.call('DEL', name)
  end
end

-- Record how a job that never ran ended (ending: a table of record.py), and
-- tell its watchers.
local function record_end(P, id, record, ending, status, now, extra)
  redis.call('HSET', record, 'processing_finished', cmsgpack.pack(now), unpack(ending))
  if extra then redis.call('HSET', record, unpack(extra)) end
  redis.call('ZREM', expiring_key(P), id)
  redis.call('HINCRBY', stats_key(P), status, 1)
  redis.call('ZADD', status_index_key(P, status), id, id)
  redis.call('PUBLISH', channel_key(P, id), cmsgpack.pack({id, status, -1}))
end

-- A job ended as `status`: its dedup key is released, and the jobs deferred on
-- it move on: queued once their last dependency completed, failed (and theirs
-- in turn) when one did not complete.
local function settle(P, id, record, status, now)
  release_key(P, id, record)
  if not redis.call('HGET', record, 'has_dependents') then return end
  local ended = {{id, status}}
  local woken = {}
  while #ended > 0 do
    local dependency, how = unpack(table.remove(ended))
    local waiting = redis.call('SMEMBERS', dependents_key(P, dependency))
    redis.call('DEL', dependents_key(P, dependency))
    for _, dependent in ipairs(waiting) do
      local key = job_hash(P, dependent)
      if unpacked(redis.call('HGET', key, 'status')) == 'deferred' then
        if how == 'completed' then
          if redis.call('HINCRBY', waiting_on_key(P), dependent, -1) <= 0 then
            redis.call('HDEL', waiting_on_key(P), dependent)
            local queue = release(P, dependent, now)
            if queue then woken[queue] = true end
          end
        else
          redis.call('HDEL', waiting_on_key(P), dependent)
          local reason = 'dependency ' .. dependency .. ' ' .. how
          record_end(P, dependent, key, DEPENDENCY_FAILED(), 'failed', now,
            {'error', cmsgpack.pack(reason), 'result', cmsgpack.pack(reason)})
          release_key(P, dependent, key)
          if redis.call('HGET', key, 'has_dependents') then
            ended[#ended + 1] = {dependent, 'failed'}
          end
        end
      end
    end
  end
  for queue in pairs(woken) do wake_for_joined(wake_key(P, queue), idle_key(P, queue)) end
end

-- A job taken out of its lane's middle (cancelled, expired) keeps its number in
-- the lane's removals: position.lua leaves it out of the jobs behind another.
-- Numbers below the next job's count for no job left, and are dropped here.
local function removed_from_lane(P, lane, record)
  local number = redis.call('HGET', record, 'lane_seq')
  if not number then return end
  local removed = removed_key(lane)
  redis.call('ZADD', removed, cmsgpack.unpack(number), cmsgpack.unpack(number))
  local next_id = redis.call('LINDEX', lane, -1)
  if not next_id then
    redis.call('DEL', removed)
    return
  end
  local first = redis.call('HGET', job_hash(P, next_id), 'lane_seq')
  if first then redis.call('ZREMRANGEBYSCORE', removed, '-inf', '(' .. cmsgpack.unpack(first)) end
end

-- A waiting job (queued, scheduled or deferred) that was not started by its
-- deadline. A queued one is most likely near its list's tail, where LREM
-- with a negative count starts looking.
local function expire(P, id, now)
  local key = job_hash(P, id)
  local current = redis.call('HMGET', key, 'status', 'queue', 'priority', 'owner')
  local status = unpacked(current[1])
  if status == 'queued' then
    local lane = lane_key(P, unpacked(current[2]), unpacked(current[3]) or 0, unpacked(current[4]))
    if redis.call('LREM', lane, -1, id) == 1 then removed_from_lane(P, lane, key) end
  elseif status == 'scheduled' then
    redis.call('ZREM', scheduled_key(P), id)
  elseif status == 'deferred' then
    redis.call('HDEL', waiting_on_key(P), id)
  else
    redis.call('ZREM', expiring_key(P), id)
    return
  end
  record_end(P, id, key, EXPIRED(), 'expired', now)
  settle(P, id, key, 'expired', now)
end

-- What every take does first, so no scheduler process is needed: move up to
-- `limit` due jobs to their queues, and expire up to `limit` late ones.
local function move_due(P, now, limit)
  local due = redis.call('ZRANGEBYSCORE', scheduled_key(P), '-inf', now, 'LIMIT', 0, limit)
  if #due > 0 then
    redis.call('ZREM', scheduled_key(P), unpack(due))
    local woken = {}
    for _, id in ipairs(due) do
      if unpacked(redis.call('HGET', job_hash(P, id), 'status')) == 'scheduled' then
        woken[enqueue(P, id, now)] = true
      end
    end
    for queue in pairs(woken) do wake_for_joined(wake_key(P, queue), idle_key(P, queue)) end
  end
  local late = redis.call('ZRANGEBYSCORE', expiring_key(P), '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(late) do expire(P, id, now) end
end

lifecycle_built = {
  job_hash = job_hash,
  lane_key = lane_key,
  owners_key = owners_key,
  wake_key = wake_key,
  channel_key = channel_key,
  chunks_channel_key = chunks_channel_key,
  stream_key = stream_key,
  status_index_key = status_index_key,
  dedup_key = dedup_key,
  dependents_key = dependents_key,
  scheduled_key = scheduled_key,
  expiring_key = expiring_key,
  paused_key = paused_key,
  waiting_on_key = waiting_on_key,
  stats_key = stats_key,
  removed_from_lane = removed_from_lane,
  schedule_times_key = schedule_times_key,
  unpacked = unpacked,
  enqueue = enqueue,
  schedule = schedule,
  release = release,
  release_key = release_key,
  record_end = record_end,
  settle = settle,
  expire = expire,
  move_due = move_due,
}
return lifecycle_built
