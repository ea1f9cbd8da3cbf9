-- Give a dead letter a fresh start at the tail of its queue.
-- KEYS[1] dead-letter list   KEYS[2] job hash   KEYS[3] queue list (of its priority)
-- KEYS[4] stats hash   KEYS[5] the queue's wake list   KEYS[6] the queue's owner ring
-- KEYS[7] index of failed ids   KEYS[8] the job's result key (a big result kept apart)
-- KEYS[9] the queue's idle workers
-- ARGV[1] id   ARGV[2] job channel
-- Returns 1 requeued, 0 when the id is not a dead letter.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
-- as clean as a new record (the prelude, from record.py): no trace of how the last
-- attempt ended (a cancel that reached it, its error kind) may steer the next one
fresh_attempt(KEYS[2])
redis.call('DEL', KEYS[8])
redis.call('HSET', KEYS[2], 'lane_seq', cmsgpack.pack(number_joining(KEYS[3], 1)))
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
join_ring(KEYS[6], cmsgpack.unpack(redis.call('HGET', KEYS[2], 'owner') or nil_value))
wake_for_joined(KEYS[5], KEYS[9])
redis.call('HINCRBY', KEYS[4], 'requeued', 1)
redis.call('PUBLISH', ARGV[2], cmsgpack.pack({ARGV[1], 'queued'}))
return 1
