-- Cancel a job: a queued one is taken out of its queue and never runs; a running
-- one is flagged and its worker told to stop (its recovery then fails it).
-- KEYS[1] job hash   KEYS[2] queue list   KEYS[3] stats hash
-- KEYS[4] index of failed ids
-- ARGV[1] id   ARGV[2] now   ARGV[3] job channel
-- ARGV[4] control channel prefix (the worker id is appended)
-- Returns 1 cancelled while queued, 2 stop requested while running, 0 already finished.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
status = cmsgpack.unpack(status)
if status == 'queued' then
  if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 0 then return 0 end
  redis.call('HSET', KEYS[1], 'processing_finished', cmsgpack.pack(tonumber(ARGV[2])),
    unpack(CANCELLED))
  redis.call('HINCRBY', KEYS[3], 'failed', 1)
  redis.call('ZADD', KEYS[4], ARGV[1], ARGV[1])
  redis.call('PUBLISH', ARGV[3], cmsgpack.pack({ARGV[1], 'failed', -1}))
  return 1
end
if status == 'started' then
  redis.call('HSET', KEYS[1], 'cancel_requested', cmsgpack.pack(true))
  local worker = cmsgpack.unpack(redis.call('HGET', KEYS[1], 'worker'))
  if worker then redis.call('PUBLISH', ARGV[4] .. worker, 'stop ' .. ARGV[1]) end
  return 2
end
return 0
