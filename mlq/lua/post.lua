-- Enqueue one job: take the next id, store its record, push it on its queue.
-- KEYS[1] counter   KEYS[2] queue list (of the job's priority)   KEYS[3] queue-names set
-- KEYS[4] the queue's wake list   KEYS[5] the queue's owner ring
-- KEYS[6] index of all ids   KEYS[7] index of the queue's ids
-- (an owned job's list is its owner's list in that queue)
-- KEYS[8] running zset   KEYS[9] the queue's idle workers   KEYS[10] registry sequence
-- KEYS[11] this post's idempotency key: a post re-sent after a lost reply returns
-- the id it already made instead of making a second job
-- KEYS[12] handed-over zset: worker id -> when it must have taken what it was handed
-- ARGV[1] job key prefix (the id is only known here; the key stays in the namespace's slot)
-- ARGV[2] queue name   ARGV[3] owner ('' for none)
-- ARGV[4] processing list prefix   ARGV[5] heartbeat prefix   ARGV[6] inbox prefix
-- ARGV[7] job channel prefix   ARGV[8] idle flag prefix (a worker id completes each)
-- ARGV[9] seconds an idle worker has to take a job handed to it; past that, any
-- worker's sweep takes the job back (the worker died while idle)
-- ARGV[10] now   ARGV[11..] record field, msgpack value, ... (the job's own: msg,
-- queue, timestamp ...)
-- Returns the new job id (integer).
local seen = redis.call('GET', KEYS[11])
if seen then return tonumber(seen) end
local id = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[11], id, 'EX', 300)
local fields = {'id', cmsgpack.pack(tostring(id)),
  'attempt', cmsgpack.pack(0), unpack(FRESH_ATTEMPT)}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
local job_key = ARGV[1] .. id
redis.call('HSET', job_key, unpack(fields))
local waiting = redis.call('LPUSH', KEYS[2], id)
redis.call('ZADD', KEYS[6], id, id)
redis.call('ZADD', KEYS[7], id, id)
join_ring(KEYS[5], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[2])
-- Only a post that finds its list empty wakes a worker: while the list holds
-- jobs, workers are busy and take the next without blocking (and a take that
-- leaves work behind wakes the next idle worker itself).
-- When a worker waits as idle (take.lua), the job is started for it here and
-- handed over in its inbox: it runs without another round trip. A worker whose
-- heartbeat is gone is passed over; so is one whose idle flag is gone (it waits
-- on several queues, and another queue's post handed it a job first).
local function hand_over()
  if ARGV[3] ~= '' then return false end  -- owners' jobs follow the owners' turns
  while true do
    local worker = redis.call('RPOP', KEYS[9])
    if not worker then return false end
    if redis.call('DEL', ARGV[8] .. worker) == 1 and redis.call('EXISTS', ARGV[5] .. worker) == 1 then
      local processing = ARGV[4] .. worker
      local now = tonumber(ARGV[10])
      redis.call('LMOVE', KEYS[2], processing, 'RIGHT', 'LEFT')
      local flat = start_job(job_key, tostring(id), worker, now, processing, nil, ARGV[7])
      redis.call('ZADD', KEYS[8], now, id)
      local size = 0
      for j = 2, #flat, 2 do size = size + #flat[j] end
      -- a large record stays in Redis: the worker takes it (it is its stray)
      local note = 'take'
      if size <= 65536 then note = cmsgpack.pack({redis.call('GET', KEYS[10]) or '0', flat}) end
      redis.call('LPUSH', ARGV[6] .. worker, note)
      redis.call('ZADD', KEYS[12], now + tonumber(ARGV[9]), worker)
      return true
    end
  end
end
if waiting == 1 and not hand_over() then wake(KEYS[4]) end
return id
