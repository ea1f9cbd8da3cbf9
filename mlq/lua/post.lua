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
-- KEYS[13] the namespace's key prefix (lifecycle.lua)   KEYS[14] the paused queues' set
-- ARGV[10] now   ARGV[11] when it is due ('' now)   ARGV[12] start-by deadline ('' none)
-- ARGV[13] dedup key ('' none)   ARGV[14] n, the number of ids it depends on
-- ARGV[15 .. 14+n] those ids
-- ARGV[15+n ..] record field, msgpack value, ... (the job's own: msg, queue, timestamp ...)
-- Returns the new job id (integer), or {id} of the live job holding the dedup key
-- (no job made); an error naming an unknown dependency (nothing written).
local P = KEYS[13]
local now = tonumber(ARGV[10])
local seen = redis.call('GET', KEYS[11])
if seen then return tonumber(seen) end
-- a dedup key names a job while it lives (and key_ttl after): that is the answer
local dedup = ARGV[13]
if dedup ~= '' then
  local holder = redis.call('GET', lifecycle().dedup_key(P, dedup))
  if holder and redis.call('EXISTS', lifecycle().job_hash(P, holder)) == 1 then
    redis.call('SET', KEYS[11], holder, 'EX', 300)
    return {tonumber(holder)}
  end
end
-- every dependency is checked before anything is written
local n = tonumber(ARGV[14])
local waits_for, failed_dependency = {}, nil
for i = 15, 14 + n do
  local status = redis.call('HGET', lifecycle().job_hash(P, ARGV[i]), 'status')
  if not status then return redis.error_reply('unknown dependency ' .. ARGV[i]) end
  status = cmsgpack.unpack(status)
  if status == 'failed' or status == 'cancelled' or status == 'expired' then
    failed_dependency = failed_dependency or {ARGV[i], status}
  elseif status ~= 'completed' then
    waits_for[#waits_for + 1] = ARGV[i]
  end
end
local id = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[11], id, 'EX', 300)
local fields = {'id', cmsgpack.pack(tostring(id)),
  'attempt', cmsgpack.pack(0), unpack(FRESH_ATTEMPT())}
for i = 15 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
-- a job that joins its lane now takes its number there (lanes.lua)
if not failed_dependency and #waits_for == 0 and not (ARGV[11] ~= '' and tonumber(ARGV[11]) > now) then
  fields[#fields + 1] = 'lane_seq'
  fields[#fields + 1] = cmsgpack.pack(number_joining(KEYS[2], 1))
end
local job_key = ARGV[1] .. id
redis.call('HSET', job_key, unpack(fields))
redis.call('ZADD', KEYS[6], id, id)
redis.call('ZADD', KEYS[7], id, id)
redis.call('SADD', KEYS[3], ARGV[2])
if dedup ~= '' then redis.call('SET', lifecycle().dedup_key(P, dedup), id) end
if ARGV[12] ~= '' then redis.call('ZADD', lifecycle().expiring_key(P), ARGV[12], id) end
id = tostring(id)
if failed_dependency then
  local reason = 'dependency ' .. failed_dependency[1] .. ' ' .. failed_dependency[2]
  lifecycle().record_end(P, id, job_key, DEPENDENCY_FAILED(), 'failed', now,
    {'error', cmsgpack.pack(reason), 'result', cmsgpack.pack(reason)})
  lifecycle().release_key(P, id, job_key)
  return tonumber(id)
end
if #waits_for > 0 then
  for _, dependency in ipairs(waits_for) do
    redis.call('SADD', lifecycle().dependents_key(P, dependency), id)
    redis.call('HSET', lifecycle().job_hash(P, dependency), 'has_dependents', cmsgpack.pack(true))
  end
  redis.call('HSET', lifecycle().waiting_on_key(P), id, #waits_for)
  redis.call('HSET', job_key, 'status', cmsgpack.pack('deferred'))
  if ARGV[11] ~= '' then redis.call('HSET', job_key, 'next_attempt_at', cmsgpack.pack(tonumber(ARGV[11]))) end
  return tonumber(id)
end
if ARGV[11] ~= '' and tonumber(ARGV[11]) > now then
  lifecycle().schedule(P, id, ARGV[2], tonumber(ARGV[11]))
  return tonumber(id)
end
local waiting = redis.call('LPUSH', KEYS[2], id)
join_ring(KEYS[5], ARGV[3])
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
      redis.call('LMOVE', KEYS[2], processing, 'RIGHT', 'LEFT')
      local flat = start_job(P, job_key, id, worker, now, processing, nil, ARGV[7])
      if not flat then return true end  -- its deadline had already passed
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
-- a paused queue keeps its jobs: no worker is handed or woken for one
if waiting == 1 and redis.call('SISMEMBER', KEYS[14], ARGV[2]) == 0
    and not hand_over() then
  wake(KEYS[4])
end
return tonumber(id)
