-- Enqueue a chunk of jobs to one queue in one step: consecutive ids, one push.
-- KEYS as post.lua: counter, queue list, queue-names set, wake list,
-- owner ring, index of all ids, index of the queue's ids, this chunk's idempotency
-- key (a chunk re-sent after a lost reply returns the ids it already made)
-- KEYS[9] the namespace's key prefix (lifecycle.lua)   KEYS[10] the paused queues' set
-- KEYS[11] the queue's idle workers
-- ARGV[1] job key prefix   ARGV[2] queue name   ARGV[3] owner ('' for none)
-- ARGV[4] when they are due ('' now)   ARGV[5] their start-by deadline ('' none)
-- ARGV[6] now
-- then per job: number of record values n, then n field, msgpack value pairs
-- Returns {first id, last id}.
local seen = redis.call('GET', KEYS[8])
if seen then
  local first, last = string.match(seen, '(%d+):(%d+)')
  return {tonumber(first), tonumber(last)}
end
local jobs = {}
local P = KEYS[9]
local i = 7
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  jobs[#jobs + 1] = {i + 1, i + 2 * n}
  i = i + 1 + 2 * n
end
local last = redis.call('INCRBY', KEYS[1], #jobs)
local first = last - #jobs + 1
redis.call('SET', KEYS[8], first .. ':' .. last, 'EX', 300)
local ids, scored = {}, {}
-- jobs that join their lane now take their numbers there (lanes.lua), in push order
local numbered = nil
if not (ARGV[4] ~= '' and tonumber(ARGV[4]) > tonumber(ARGV[6])) then
  numbered = number_joining(KEYS[2], #jobs)
end
for j, span in ipairs(jobs) do
  local id = first + j - 1
  local fields = {'id', cmsgpack.pack(tostring(id)),
  'attempt', cmsgpack.pack(0), unpack(FRESH_ATTEMPT())}
  if numbered then
    fields[#fields + 1] = 'lane_seq'
    fields[#fields + 1] = cmsgpack.pack(numbered + j - 1)
  end
  for k = span[1], span[2] do fields[#fields + 1] = ARGV[k] end
  redis.call('HSET', ARGV[1] .. id, unpack(fields))
  ids[#ids + 1] = id
  scored[#scored + 1] = id
  scored[#scored + 1] = id
end
redis.call('ZADD', KEYS[6], unpack(scored))
redis.call('ZADD', KEYS[7], unpack(scored))
redis.call('SADD', KEYS[3], ARGV[2])
if ARGV[5] ~= '' then
  local deadlines = {}
  for _, id in ipairs(ids) do
    deadlines[#deadlines + 1] = ARGV[5]
    deadlines[#deadlines + 1] = id
  end
  redis.call('ZADD', lifecycle().expiring_key(P), unpack(deadlines))
end
if ARGV[4] ~= '' and tonumber(ARGV[4]) > tonumber(ARGV[6]) then
  for _, id in ipairs(ids) do lifecycle().schedule(P, tostring(id), ARGV[2], tonumber(ARGV[4])) end
  return {first, last}
end
local waiting = redis.call('LPUSH', KEYS[2], unpack(ids))
join_ring(KEYS[5], ARGV[3])
-- the list was empty: wake a worker (a take that leaves work behind wakes the next)
if waiting == #ids and redis.call('SISMEMBER', KEYS[10], ARGV[2]) == 0 then
  wake_for_joined(KEYS[4], KEYS[11])
end
return {first, last}
