-- Start up to `count` jobs on a worker: each is moved from the first non-empty
-- queue list (queues in the worker's order of preference, highest priority
-- first) into the worker's processing list. With ARGV[6], that id was already
-- moved there and up to count - 1 more are taken. A batch is one atomic step.
-- KEYS[1] worker's processing list   KEYS[2] running zset
-- KEYS[3] registry sequence (returned so the worker notices new listeners at no cost)
-- KEYS[4..] queue lists, in the order to take from
-- ARGV[1] job key prefix   ARGV[2] worker id   ARGV[3] now (epoch seconds)
-- ARGV[4] namespace events channel   ARGV[5] job channel prefix
-- ARGV[6] id already moved ('' for none)   ARGV[7] count (default 1)
-- Returns {registry sequence, {field, value, ...}, ...}: one flat record per started
-- job, or false when nothing was started (empty queue, or ids whose records are
-- gone or not queued).
local now = tonumber(ARGV[3])
local count = tonumber(ARGV[7] or '1')
local answer = {redis.call('GET', KEYS[3]) or '0'}

local function start(id)
  local job_key = ARGV[1] .. id
  local status = redis.call('HGET', job_key, 'status')
  if not status or cmsgpack.unpack(status) ~= 'queued' then
    -- purged, cancelled or cleared while queued: drop the stray id, nothing to run
    redis.call('LREM', KEYS[1], 1, id)
    return
  end
  local attempt_raw = redis.call('HGET', job_key, 'attempt')
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
  local event = cmsgpack.pack({id, 'started', 0})
  redis.call('PUBLISH', ARGV[4], event)
  redis.call('PUBLISH', ARGV[5] .. id, event)
  answer[#answer + 1] = redis.call('HGETALL', job_key)
end

local given = ARGV[6]
if given and given ~= '' then
  start(given)
  count = count - 1
end
local lane = 4
while count > 0 and lane <= #KEYS do
  local id = redis.call('LMOVE', KEYS[lane], KEYS[1], 'RIGHT', 'LEFT')
  if id then
    start(id)
    count = count - 1
  else
    lane = lane + 1
  end
end
if #answer == 1 then return false end
return answer
