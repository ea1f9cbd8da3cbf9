-- End one attempt of a job as completed or failed, if that attempt still owns it.
-- KEYS[1] job hash   KEYS[2] worker's processing list   KEYS[3] running zset
-- KEYS[4] dead-letter list   KEYS[5] stats hash   KEYS[6] owner -> running count hash
-- KEYS[7] index of started ids   KEYS[8] of completed ids   KEYS[9] of failed ids
-- ARGV[1] id   ARGV[2] worker id   ARGV[3] attempt   ARGV[4] 'completed' | 'failed'
-- ARGV[5] now   ARGV[6] namespace events channel   ARGV[7] job channel
-- ARGV[8] run-time histogram bucket field ('' for none)   ARGV[9] run time seconds
-- ARGV[10] keep the record this many ms (0: forever)
-- ARGV[11..] record field, msgpack value, ... (result, short_result, error)
-- Returns 1 when recorded (also when this very finish was already recorded and is
-- only sent again), 0 when this attempt was fenced off (requeued, purged,
-- or finished by someone else): then nothing changed and no callback is due.
local current = redis.call('HMGET', KEYS[1], 'status', 'worker', 'attempt', 'owner', 'finished_by')
local me = ARGV[2] .. '#' .. ARGV[3]
if not current[1] or cmsgpack.unpack(current[1]) ~= 'started' then
  -- the same finish sent again after its reply was lost: it did count
  if current[5] and cmsgpack.unpack(current[5]) == me then return 1 end
  return 0
end
if cmsgpack.unpack(current[2] or cmsgpack.pack(nil)) ~= ARGV[2] then return 0 end
if tostring(cmsgpack.unpack(current[3] or cmsgpack.pack(0))) ~= ARGV[3] then return 0 end
local outcome = ARGV[4]
local progress = 100
if outcome == 'failed' then progress = -1 end
local fields = {
  'status', cmsgpack.pack(outcome),
  'progress', cmsgpack.pack(progress),
  'processing_finished', cmsgpack.pack(tonumber(ARGV[5])),
  'worker', cmsgpack.pack(nil),
  'finished_by', cmsgpack.pack(me)}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('LREM', KEYS[2], 1, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local owner = cmsgpack.unpack(current[4] or cmsgpack.pack(nil))
if owner and redis.call('HINCRBY', KEYS[6], owner, -1) <= 0 then redis.call('HDEL', KEYS[6], owner) end
redis.call('ZREM', KEYS[7], ARGV[1])
if outcome == 'failed' then
  redis.call('ZADD', KEYS[9], ARGV[1], ARGV[1])
  redis.call('RPUSH', KEYS[4], ARGV[1])
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
else
  redis.call('ZADD', KEYS[8], ARGV[1], ARGV[1])
  redis.call('HINCRBY', KEYS[5], 'completed', 1)
end
if ARGV[8] ~= '' then
  redis.call('HINCRBY', KEYS[5], ARGV[8], 1)
  redis.call('HINCRBYFLOAT', KEYS[5], 'runtime_sum', ARGV[9])
end
if tonumber(ARGV[10]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[10]) end
local event = cmsgpack.pack({ARGV[1], outcome, progress})
redis.call('PUBLISH', ARGV[6], event)
redis.call('PUBLISH', ARGV[7], event)
return 1
