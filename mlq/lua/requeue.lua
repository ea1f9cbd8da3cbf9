-- Recover a job held by a worker that died, timed out or was told to stop:
-- back to the head of its queue with retries + 1, or failed once retries are used up.
-- Claiming the id out of the worker's processing list is the fence: of two
-- reapers (or a reaper and a supervisor) only the one whose LREM removed it acts.
-- KEYS[1] job hash   KEYS[2] worker's processing list   KEYS[3] running zset
-- KEYS[4] queue list (of the job's priority)   KEYS[5] dead-letter list   KEYS[6] stats hash
-- KEYS[7] the queue's wake list   KEYS[8] owner -> running count hash
-- KEYS[9] the queue's owner ring (an owned job goes back to its owner's list, KEYS[4])
-- KEYS[10] index of failed ids   KEYS[11] the namespace's key prefix (lifecycle.lua)
-- KEYS[12] the queue's idle workers
-- ARGV[1] id   ARGV[2] max retries   ARGV[3] now   ARGV[4] reason   ARGV[5] job channel
-- Returns 0 nothing done, 1 requeued, 2 failed (retries used up), 3 put back
-- untouched (it had been moved but never started), 4 ended cancelled.
if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
status = cmsgpack.unpack(status)
-- back at the head of its lane, where no number tells its place: position.lua
-- looks for it from that end
redis.call('HDEL', KEYS[1], 'lane_seq')
if status == 'queued' then
  redis.call('RPUSH', KEYS[4], ARGV[1])
  join_ring(KEYS[9], cmsgpack.unpack(redis.call('HGET', KEYS[1], 'owner') or nil_value), true)
  wake_for_joined(KEYS[7], KEYS[12])
  return 3
end
if status ~= 'started' then return 0 end
local owner = cmsgpack.unpack(redis.call('HGET', KEYS[1], 'owner') or nil_value)
if owner and redis.call('HINCRBY', KEYS[8], owner, -1) <= 0 then redis.call('HDEL', KEYS[8], owner) end
local retries = (cmsgpack.unpack(redis.call('HGET', KEYS[1], 'retries') or cmsgpack.pack(0)) or 0) + 1
local event
local code
local cancelled = redis.call('HGET', KEYS[1], 'cancel_requested')
if cancelled then
  -- stopped because the user cancelled it: never run again
  lifecycle().record_end(KEYS[11], ARGV[1], KEYS[1], CANCELLED(), 'cancelled', tonumber(ARGV[3]))
  lifecycle().settle(KEYS[11], ARGV[1], KEYS[1], 'cancelled', tonumber(ARGV[3]))
  return 4
end
if retries >= tonumber(ARGV[2]) then
  local reason = 'gave up after ' .. retries .. ' attempts'
  redis.call('HSET', KEYS[1], 'retries', cmsgpack.pack(retries),
    'processing_finished', cmsgpack.pack(tonumber(ARGV[3])),
    'error', cmsgpack.pack(reason), 'result', cmsgpack.pack(reason),
    'last_error', cmsgpack.pack(ARGV[4]), unpack(GAVE_UP()))
  redis.call('RPUSH', KEYS[5], ARGV[1])
  redis.call('HINCRBY', KEYS[6], 'failed', 1)
  redis.call('ZADD', KEYS[10], ARGV[1], ARGV[1])
  event = cmsgpack.pack({ARGV[1], 'failed', -1})
  lifecycle().settle(KEYS[11], ARGV[1], KEYS[1], 'failed', tonumber(ARGV[3]))
  code = 2
else
  redis.call('HSET', KEYS[1], 'retries', cmsgpack.pack(retries),
    'last_error', cmsgpack.pack(ARGV[4]), unpack(RECOVERED()))
  redis.call('RPUSH', KEYS[4], ARGV[1])
  join_ring(KEYS[9], owner, true)
  wake_for_joined(KEYS[7], KEYS[12])
  redis.call('HINCRBY', KEYS[6], 'requeued', 1)
  event = cmsgpack.pack({ARGV[1], 'queued'})
  code = 1
end
redis.call('PUBLISH', ARGV[5], event)
return code
