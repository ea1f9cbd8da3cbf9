-- End attempts of jobs as completed or failed, each only if that attempt still
-- owns its job. A worker that runs short jobs back to back records several in
-- one step.
-- KEYS[1] worker's processing list   KEYS[2] running zset   KEYS[3] dead-letter list
-- KEYS[4] stats hash   KEYS[5] owner -> running count hash
-- KEYS[6] index of completed ids   KEYS[7] index of failed ids
-- KEYS[8] labelled metrics hash   KEYS[9] set of the function labels kept (metrics.lua)
-- KEYS[10] the namespace's key prefix (lifecycle.lua)
-- KEYS[11] the tally list: what finishes counted, not yet added up (metrics.lua)
-- ARGV[1] job key prefix   ARGV[2] job channel prefix   ARGV[3] worker id
-- ARGV[4] keep each record this many ms (0: forever)
-- ARGV[5] the per-minute history's key prefix (Keys.history)   ARGV[6] its keys' lifetime, s
-- then per job: id, attempt, 'completed' | 'failed' | 'retry' (scheduled to run
-- again when its next_attempt_at, one of its values, is due), run-time histogram
-- bucket field ('' for none), run time seconds, finish time (epoch seconds),
-- '1' when its record is small enough to read whole ('' otherwise: a message may be
-- megabytes, and only the fields needed are read), number of record values n, then
-- n field, msgpack
-- value pairs (result, short_result, error ...), then the job's result key and the
-- big result kept there ('' and '' for none: the result is in the record)
-- A job cancelled while it ran ends cancelled, whatever its attempt's outcome.
-- Each recorded attempt is counted (the stats hash, the per-minute history, and
-- by queue, function and error kind, with its wait since the post), in one entry
-- of the tally list for the whole step (metrics.lua).
-- Returns one number per job: 1 recorded (also when this very finish was already
-- recorded and is only sent again), 2 recorded as cancelled, 0 when the attempt
-- was fenced off (requeued, purged, or finished by someone else): then nothing
-- changed. A callback is due only for 1.
local P = KEYS[10]
local ttl = tonumber(ARGV[4])
local answers, done, completed, failed, settled = {}, {}, {}, {}, {}
local buckets, runtime_sum = {}, 0

-- a record read before an HSET of `fields`, as it reads after it
local function updated(flat, fields)
  local at = {}
  for j = 1, #flat, 2 do at[flat[j]] = j end
  local out = {unpack(flat)}
  for j = 1, #fields, 2 do
    local k = at[fields[j]]
    if k then
      out[k + 1] = fields[j + 1]
    else
      out[#out + 1] = fields[j]
      out[#out + 1] = fields[j + 1]
      at[fields[j]] = #out - 1
    end
  end
  return out
end

local i = 7
local per_minute = {}
while i <= #ARGV do
  local id, attempt, outcome = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local bucket, runtime, finished = ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  local whole = ARGV[i + 6] == '1'
  local n = tonumber(ARGV[i + 7])
  local first, last = i + 8, i + 7 + 2 * n
  local result_key, result = ARGV[last + 1], ARGV[last + 2]
  i = last + 3
  local job_key = ARGV[1] .. id
  local needed = {'status', 'worker', 'attempt', 'owner', 'finished_by', 'cancel_requested',
    'key', 'has_dependents', 'functions', 'streamed', 'waited', 'queue', 'call_name',
    'timestamp', 'processing_started'}
  local current, flat = {}, nil
  if whole then
    -- one read serves both the checks below and a waiter's copy of the record
    flat = redis.call('HGETALL', job_key)
    local by_name = {}
    for j = 1, #flat, 2 do by_name[flat[j]] = flat[j + 1] end
    for j, name in ipairs(needed) do current[j] = by_name[name] or false end
  else
    current = redis.call('HMGET', job_key, unpack(needed))
  end
  local me = ARGV[3] .. '#' .. attempt
  local answer = 0
  if not current[1] or cmsgpack.unpack(current[1]) ~= 'started' then
    -- the same finish sent again after its reply was lost: it did count
    if current[5] and cmsgpack.unpack(current[5]) == me then answer = 1 end
  elseif cmsgpack.unpack(current[2] or nil_value) == ARGV[3]
      and tostring(cmsgpack.unpack(current[3] or cmsgpack.pack(0))) == attempt then
    answer = 1
    if current[6] then outcome = 'cancelled' end
    local progress = 100
    if outcome ~= 'completed' then progress = -1 end
    local fields = {
      'status', cmsgpack.pack(outcome),
      'progress', cmsgpack.pack(progress),
      'processing_finished', cmsgpack.pack(finished),
      'worker', nil_value,
      'finished_by', cmsgpack.pack(me)}
    if outcome == 'cancelled' then
      answer = 2
      for _, value in ipairs(CANCELLED()) do fields[#fields + 1] = value end
    else
      for j = first, last do fields[#fields + 1] = ARGV[j] end
    end
    if outcome == 'retry' then
      fields[2] = cmsgpack.pack('scheduled')
      fields[4] = nil_value
    end
    redis.call('HSET', job_key, unpack(fields))
    if ttl > 0 and outcome ~= 'retry' then redis.call('PEXPIRE', job_key, ttl) end
    -- written only here, by the attempt that owns the job: a fenced finish leaves
    -- none, and never overwrites the one of the attempt that counted
    if result_key ~= '' and outcome == 'completed' then
      -- it outlives its record by a second, so whoever found the record finds it too
      if ttl > 0 then
        redis.call('SET', result_key, result, 'PX', ttl + 1000)
      else
        redis.call('SET', result_key, result)
      end
    end
    local owner = cmsgpack.unpack(current[4] or nil_value)
    if owner and redis.call('HINCRBY', KEYS[5], owner, -1) <= 0 then
      redis.call('HDEL', KEYS[5], owner)
    end
    done[id] = true
    done[#done + 1] = id
    if outcome == 'failed' then
      failed[#failed + 1] = id
      failed[#failed + 1] = id
    elseif outcome == 'completed' then
      completed[#completed + 1] = id
    elseif outcome == 'cancelled' then
      redis.call('ZADD', lifecycle().status_index_key(P, 'cancelled'), id, id)
      redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
    else
      local due = cmsgpack.unpack(redis.call('HGET', job_key, 'next_attempt_at'))
      redis.call('ZADD', lifecycle().scheduled_key(P), due, id)
      redis.call('HINCRBY', KEYS[4], 'retried', 1)
      if redis.call('ZRANGE', lifecycle().scheduled_key(P), 0, 0)[1] == id then
        wake(lifecycle().wake_key(P, cmsgpack.unpack(redis.call('HGET', job_key, 'queue'))))
      end
    end
    local kind = nil
    if outcome == 'failed' then
      for j = first, last - 1, 2 do
        if ARGV[j] == 'error_kind' then kind = cmsgpack.unpack(ARGV[j + 1]) end
      end
    end
    count_attempt(current[12], current[13], current[9], current[14], current[15], outcome, kind,
      bucket, runtime)
    if outcome == 'completed' or outcome == 'failed' then
      local field = math.floor(finished / 60) .. '|' .. outcome
      per_minute[field] = (per_minute[field] or 0) + 1
    end
    if outcome ~= 'retry' and (current[7] or current[8]) then
      settled[#settled + 1] = {id, job_key, outcome, finished}
    end
    if bucket ~= '' then
      buckets[bucket] = (buckets[bucket] or 0) + 1
      runtime_sum = runtime_sum + tonumber(runtime)
    end
    local channel = ARGV[2] .. id
    local event = {id, outcome, progress}
    if outcome == 'retry' then event = {id, 'scheduled'} end
    -- someone waits for the outcome (await.lua or the post marked it): hand over a small
    -- record with the event, saving a read (a retry is no outcome yet)
    if outcome ~= 'retry' and current[11] then
      if flat then
        event[4] = updated(flat, fields)
      else
        flat = redis.call('HGETALL', job_key)
        local size = 0
        for j = 2, #flat, 2 do size = size + #flat[j] end
        if size <= 65536 then event[4] = flat end
      end
    end
    redis.call('PUBLISH', channel, cmsgpack.pack(event))
    if current[10] and outcome ~= 'retry' then
      -- the chunks' readers learn of the end in the same step as the status changes,
      -- and the chunks live as long as the result (streams.py)
      local stream = lifecycle().stream_key(P, id)
      redis.call('XADD', stream, '*', 'end', outcome)
      if ttl > 0 then redis.call('PEXPIRE', stream, ttl + 1000) end
      redis.call('PUBLISH', lifecycle().chunks_channel_key(P, id), '')
    end
  end
  answers[#answers + 1] = answer
end

if #done == 1 then
  redis.call('LREM', KEYS[1], 0, done[1])
  redis.call('ZREM', KEYS[2], done[1])
elseif #done > 1 then
  -- the processing list holds a handful of ids: rewrite it without the finished ones
  local held = redis.call('LRANGE', KEYS[1], 0, -1)
  local keep = {}
  for _, id in ipairs(held) do
    if done[id] then done[id] = nil else keep[#keep + 1] = id end
  end
  redis.call('DEL', KEYS[1])
  if #keep > 0 then redis.call('RPUSH', KEYS[1], unpack(keep)) end
  redis.call('ZREM', KEYS[2], unpack(done))
end
for _, ended in ipairs(settled) do lifecycle().settle(P, ended[1], ended[2], ended[3], ended[4]) end
local counts = {#completed, math.floor(#failed / 2), buckets, runtime_sum, per_minute}
if #failed > 0 then
  redis.call('ZADD', KEYS[7], unpack(failed))
  local dead = {}
  for j = 2, #failed, 2 do dead[#dead + 1] = failed[j] end
  redis.call('RPUSH', KEYS[3], unpack(dead))
end
tally(KEYS[11], counts, completed, KEYS[4], KEYS[8], KEYS[9], ARGV[5], ARGV[6], KEYS[6])
return answers
