-- Enqueue one job: take the next id, store its record, push it on its queue.
-- KEYS[1] counter   KEYS[2] queue list (of the job's priority)   KEYS[3] queue-names set
-- KEYS[4] stats hash   KEYS[5] the queue's wake list   KEYS[6] the queue's owner ring
-- KEYS[7] index of all ids   KEYS[8] index of the queue's ids
-- (an owned job's list is its owner's list in that queue)
-- KEYS[9] this post's idempotency key: a post re-sent after a lost reply returns
-- the id it already made instead of making a second job
-- ARGV[1] job key prefix (the id is only known here; the key stays in the namespace's slot)
-- ARGV[2] queue name   ARGV[3] owner ('' for none)
-- ARGV[4..] record field, msgpack value, ... (the job's own: msg, queue, timestamp ...)
-- Returns the new job id (integer).
local seen = redis.call('GET', KEYS[9])
if seen then return tonumber(seen) end
local id = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[9], id, 'EX', 300)
local fields = {'id', cmsgpack.pack(tostring(id)), unpack(NEW_RECORD)}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', ARGV[1] .. id, unpack(fields))
local waiting = redis.call('LPUSH', KEYS[2], id)
redis.call('ZADD', KEYS[7], id, id)
redis.call('ZADD', KEYS[8], id, id)
if ARGV[3] ~= '' and not redis.call('LPOS', KEYS[6], ARGV[3]) then
  redis.call('RPUSH', KEYS[6], ARGV[3])
end
redis.call('SADD', KEYS[3], ARGV[2])
-- Only a post that finds its list empty wakes a worker: while the list holds
-- jobs, workers are busy and take the next without blocking (and a take that
-- leaves work behind wakes the next idle worker itself).
if waiting == 1 then
  redis.call('LPUSH', KEYS[5], 1)
  redis.call('LTRIM', KEYS[5], 0, 63)
end
redis.call('HINCRBY', KEYS[4], 'posted', 1)
return id
