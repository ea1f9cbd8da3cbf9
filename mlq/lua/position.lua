-- Where a queued job stands in line, and what its ETA is made of (position.py).
-- Read-only; O(lanes + owners + workers) commands, none of which walks a list
-- (but the look for a job requeued to the head of its lane, bounded below).
-- KEYS[1] job hash   KEYS[2] its lane   KEYS[3] the lane's counter of jobs joined
-- KEYS[4] the lane's removals   KEYS[5] worker ids set   KEYS[6] stats hash
-- KEYS[7] the labelled metrics hash (metrics.py)   KEYS[8] the queue's owner ring
-- KEYS[9 ..] the lanes workers take from before this one (higher priorities;
-- for an owner's job, every plain lane of its queue)
-- ARGV[1] job id   ARGV[2] owner ('' for a plain lane)   ARGV[3] owners' list prefix
-- ARGV[4] heartbeat key prefix   ARGV[5] n, how many histogram fields of the stats
-- hash follow ARGV[7]   ARGV[6] how far from its head to look for a job with no number
-- ARGV[7] the job's queue: only the live workers that take from it count
-- ARGV[8 .. 7+n] the run-time histogram's fields in the stats hash, then the job's
-- queue's and function's run-time sum and histogram fields in the metrics hash
-- Returns false when the job is not queued (or not found in its lane), else
-- {jobs ahead, live workers, runs, their seconds, its function's runs, their seconds}.
local place = redis.call('HMGET', KEYS[1], 'status', 'lane_seq')
if not place[1] or cmsgpack.unpack(place[1]) ~= 'queued' then return false end
local length = redis.call('LLEN', KEYS[2])
local number = place[2] and cmsgpack.unpack(place[2])
local ahead
if number then
  -- every job that joined after this one is behind it (a take starts at the
  -- head, where this one is nearer) unless it was taken out of the middle
  local joined = tonumber(redis.call('GET', KEYS[3]) or '0')
  local behind = joined - number - redis.call('ZCOUNT', KEYS[4], '(' .. number, '+inf')
  ahead = length - 1 - behind
else
  -- taken back to the head of its lane (requeue.lua): look from that end
  local at = redis.call('LPOS', KEYS[2], ARGV[1], 'RANK', -1, 'MAXLEN', tonumber(ARGV[6]))
  if not at then return false end
  ahead = length - 1 - at
end
ahead = math.max(0, math.min(ahead, length - 1))
local mine = ahead
for i = 9, #KEYS do ahead = ahead + redis.call('LLEN', KEYS[i]) end

-- owners take turns, one job each, from the head of the ring: every other owner
-- has min(its jobs, my turns) ahead, one more turn for the owners before mine
if ARGV[2] ~= '' then
  local ring = redis.call('LRANGE', KEYS[8], 0, -1)
  local before = 1
  for _, owner in ipairs(ring) do
    if owner == ARGV[2] then
      before = 0
    else
      ahead = ahead + math.min(redis.call('LLEN', ARGV[3] .. owner), mine + before)
    end
  end
end

-- a heartbeat lists its worker's queues (heartbeat.py); one without them counts
local live = 0
for _, worker in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  local beat = redis.call('GET', ARGV[4] .. worker)
  if beat then
    local ok, info = pcall(cmsgpack.unpack, beat)
    local serves = not ok or type(info) ~= 'table' or type(info.queues) ~= 'table'
    if not serves then
      for _, name in ipairs(info.queues) do
        if name == ARGV[7] then serves = true end
      end
    end
    if serves then live = live + 1 end
  end
end
local global = tonumber(ARGV[5])
local fields = {'runtime_sum'}
for i = 8, 7 + global do fields[#fields + 1] = ARGV[i] end
local stats = redis.call('HMGET', KEYS[6], unpack(fields))
local runs = 0
for i = 2, #stats do runs = runs + tonumber(stats[i] or '0') end
-- the same for the job's queue and function, from the labelled metrics
local own_fields = {}
for i = 8 + global, #ARGV do own_fields[#own_fields + 1] = ARGV[i] end
local own = redis.call('HMGET', KEYS[7], unpack(own_fields))
local own_runs = 0
for i = 2, #own do own_runs = own_runs + tonumber(own[i] or '0') end
return {ahead, live, runs, stats[1] or '0', own_runs, own[1] or '0'}
