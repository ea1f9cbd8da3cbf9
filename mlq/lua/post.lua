-- Enqueue one job: take the next id, store its record, and push it on its queue or
-- start it on a worker that waits as idle.
-- KEYS[1] counter   KEYS[2] queue list (of the job's priority)   KEYS[3] queue-names set
-- KEYS[4] the queue's wake list   KEYS[5] the queue's owner ring
-- KEYS[6] index of all ids   KEYS[7] the index log (index_log.lua)
-- (an owned job's list is its owner's list in that queue)
-- KEYS[8] running zset   KEYS[9] the queue's idle workers
-- KEYS[10] this post's idempotency key: a post re-sent after a lost reply returns
-- the id it already made instead of making a second job
-- ARGV[1] job key prefix (the id is only known here; the key stays in the namespace's slot)
-- ARGV[2] queue name   ARGV[3] owner ('' for none)
-- ARGV[4] processing list prefix   ARGV[5] inbox prefix
-- ARGV[6] idle flag prefix (a worker id completes each; take.lua)
-- ARGV[7] the queues' id index prefix (a queue name completes each)
-- KEYS[11] the namespace's key prefix (lifecycle.lua)   KEYS[12] the paused queues' set
-- KEYS[13], KEYS[14] the posts' tokens of this five minutes and the last (index_log.lua)
-- ARGV[8] how the post is kept from making two jobs when sent again: '' with its
-- idempotency key (KEYS[10]); 'first <token>' (a plain post, sent for the first
-- time) with its token in its index log entry, written to KEYS[13] with the
-- index; 'again <token>' the same post sent again, which looks for its token there
-- first (the client knows: roundtrips.py)
-- ARGV[9] now   ARGV[10] when it is due ('' now)   ARGV[11] start-by deadline ('' none)
-- ARGV[12] dedup key ('' none)   ARGV[13] n, the number of ids it depends on
-- ARGV[14 .. 13+n] those ids
-- ARGV[14+n ..] record field, msgpack value, ... (the job's own: msg, queue, timestamp ...)
-- Returns the new job id (integer), or {id} of the live job holding the dedup key
-- (no job made); an error naming an unknown dependency (nothing written).
local P = KEYS[11]
local now = tonumber(ARGV[9])
local dedup = ARGV[12]
local n = tonumber(ARGV[13])
-- A post with neither a dedup key nor dependencies learns whether it was sent
-- before in the same command that keeps its id (below); the others must answer
-- as they first did, before they look at the jobs they name.
local plain = dedup == '' and n == 0
local sent, token = string.match(ARGV[8], '^(%a+) (%S+)$')
if not plain then sent, token = nil, nil end
if sent == 'again' then
  local before = posted_token(KEYS[7], KEYS[13], KEYS[14], token)
  if before then return tonumber(before) end
end
if not plain then
  local seen = redis.call('GET', KEYS[10])
  if seen then return tonumber(seen) end
end
-- a dedup key names a job while it lives (and key_ttl after): that is the answer
if dedup ~= '' then
  local holder = redis.call('GET', lifecycle().dedup_key(P, dedup))
  if holder and redis.call('EXISTS', lifecycle().job_hash(P, holder)) == 1 then
    redis.call('SET', KEYS[10], holder, 'EX', 300)
    return {tonumber(holder)}
  end
end
-- every dependency is checked before anything is written
local waits_for, failed_dependency = {}, nil
for i = 14, 13 + n do
  local status = redis.call('HGET', lifecycle().job_hash(P, ARGV[i]), 'status')
  if not status then return redis.error_reply('unknown dependency ' .. ARGV[i]) end
  status = cmsgpack.unpack(status)
  if status == 'failed' or status == 'cancelled' or status == 'expired' then
    failed_dependency = failed_dependency or {ARGV[i], status}
  elseif status ~= 'completed' then
    waits_for[#waits_for + 1] = ARGV[i]
  end
end
local delayed = ARGV[10] ~= '' and tonumber(ARGV[10]) > now
local runs_now = not failed_dependency and #waits_for == 0 and not delayed
local paused = nil
local function is_paused()
  if paused == nil then paused = redis.call('SISMEMBER', KEYS[12], ARGV[2]) == 1 end
  return paused
end
-- When a worker waits as idle (take.lua), the job is started for that worker right
-- here and handed over in its inbox: it runs without another round trip, and never
-- enters its lane. No job waits before it: a queue's idle workers found its lanes
-- empty, and whatever puts jobs in them but a post takes the workers off the idle
-- list (lanes.lua, wake_for_joined); a post that finds none pushes its job. A worker whose claim
-- lapsed (it stopped, or died, while idle) is passed over, and so is one that waits
-- on several queues once another queue's post handed it a job (its idle flag is
-- gone). A paused queue has no idle workers (Control.pause, take.lua): it keeps
-- its jobs.
local function idle_worker()
  -- owners' jobs follow the owners' turns
  if not runs_now or ARGV[3] ~= '' then return nil end
  while true do
    -- scored by when its claim lapses: the latest claim first
    local popped = redis.call('ZPOPMAX', KEYS[9])
    if not popped[1] then return nil end
    if tonumber(popped[2]) < now then
      -- so have all the others' claims
      redis.call('DEL', KEYS[9])
      return nil
    end
    local worker = popped[1]
    if string.sub(worker, 1, 1) ~= '+' then return worker end
    worker = string.sub(worker, 2)
    if redis.call('DEL', ARGV[6] .. worker) == 1 then return worker end
  end
end

local id = redis.call('INCR', KEYS[1])
if token then
  -- kept with the index (log_posted), where the same post sent again looks for it
elseif plain then
  local seen = redis.call('SET', KEYS[10], id, 'NX', 'GET', 'EX', 300)
  if seen then
    -- sent again after its reply was lost: the first post's id, and no new one
    redis.call('DECR', KEYS[1])
    return tonumber(seen)
  end
else
  redis.call('SET', KEYS[10], id, 'EX', 300)
end
local fields = {'id', cmsgpack.pack(tostring(id)),
  'attempt', cmsgpack.pack(0), unpack(FRESH_ATTEMPT())}
for i = 14 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
local worker = idle_worker()
if worker then
  -- the started fields come last: they win over the fresh ones, in Redis and in
  -- the worker's copy alike
  local started = {'status', cmsgpack.pack('started'), 'worker', cmsgpack.pack(worker),
    'processing_started', cmsgpack.pack(now), 'progress', cmsgpack.pack(0),
    'attempt', cmsgpack.pack(1)}
  for _, value in ipairs(started) do fields[#fields + 1] = value end
elseif runs_now then
  -- a job that joins its lane now takes its number there (lanes.lua)
  fields[#fields + 1] = 'lane_seq'
  fields[#fields + 1] = cmsgpack.pack(number_joining(KEYS[2], 1))
end
local job_key = ARGV[1] .. id
redis.call('HSET', job_key, unpack(fields))
log_posted(KEYS[7], id, ARGV[2], token, KEYS[6], KEYS[3], ARGV[7], KEYS[13])
if dedup ~= '' then redis.call('SET', lifecycle().dedup_key(P, dedup), id) end
-- a job started now has met its start-by deadline
if ARGV[11] ~= '' and not worker then redis.call('ZADD', lifecycle().expiring_key(P), ARGV[11], id) end
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
  if ARGV[10] ~= '' then redis.call('HSET', job_key, 'next_attempt_at', cmsgpack.pack(tonumber(ARGV[10]))) end
  return tonumber(id)
end
if delayed then
  lifecycle().schedule(P, id, ARGV[2], tonumber(ARGV[10]))
  return tonumber(id)
end
if worker then
  -- No 'started' event: nobody can listen to a job's channel before its post
  -- returns its id, and whoever asks later reads that it started.
  redis.call('LPUSH', ARGV[4] .. worker, id)
  redis.call('ZADD', KEYS[8], now, id)
  local size = 0
  for j = 2, #fields, 2 do size = size + #fields[j] end
  -- The note says when it was handed over: a worker that has not taken it within
  -- HAND_OVER_WINDOW died while idle, and a sweep takes its jobs back (reaper.py).
  -- A large record stays in Redis: the worker takes it (it is its stray).
  local note = {now}
  if size <= 65536 then note = {now, fields} end
  redis.call('LPUSH', ARGV[5] .. worker, cmsgpack.pack(note))
  return tonumber(id)
end
-- Only a post that finds its list empty wakes a worker: while the list holds
-- jobs, workers are busy and take the next without blocking (and a take that
-- leaves work behind wakes the next idle worker itself).
if redis.call('LPUSH', KEYS[2], id) == 1 and not is_paused() then wake(KEYS[4]) end
join_ring(KEYS[5], ARGV[3])
return tonumber(id)
