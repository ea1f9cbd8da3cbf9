-- Start one job on a worker. Without ARGV[6], first moves the oldest id of the
-- queue into the worker's processing list (the non-blocking fast path); with it,
-- the id was already moved there by the worker's BLMOVE.
-- KEYS[1] queue list   KEYS[2] worker's processing list   KEYS[3] running zset
-- KEYS[4] registry sequence (returned so the worker notices new listeners at no cost)
-- ARGV[1] job key prefix   ARGV[2] worker id   ARGV[3] now (epoch seconds)
-- ARGV[4] namespace events channel   ARGV[5] job channel prefix   ARGV[6] id (optional)
-- Returns {registry sequence, field, value, ...} for the started record, or false
-- when there was nothing to start (empty queue, or an id whose record is gone or
-- not queued).
local id = ARGV[6]
if not id or id == '' then
  id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not id then return false end
end
local job_key = ARGV[1] .. id
local status = redis.call('HGET', job_key, 'status')
if not status or cmsgpack.unpack(status) ~= 'queued' then
  -- purged or cleared while queued: drop the stray id, nothing to run
  redis.call('LREM', KEYS[2], 1, id)
  return false
end
local attempt_raw = redis.call('HGET', job_key, 'attempt')
local attempt = 1
if attempt_raw then attempt = (cmsgpack.unpack(attempt_raw) or 0) + 1 end
local now = tonumber(ARGV[3])
redis.call('HSET', job_key,
  'status', cmsgpack.pack('started'),
  'worker', cmsgpack.pack(ARGV[2]),
  'processing_started', cmsgpack.pack(now),
  'processing_finished', cmsgpack.pack(nil),
  'progress', cmsgpack.pack(0),
  'attempt', cmsgpack.pack(attempt))
redis.call('ZADD', KEYS[3], now, id)
local event = cmsgpack.pack({id, 'started', 0})
redis.call('PUBLISH', ARGV[4], event)
redis.call('PUBLISH', ARGV[5] .. id, event)
local answer = redis.call('HGETALL', job_key)
table.insert(answer, 1, redis.call('GET', KEYS[4]) or '0')
return answer
