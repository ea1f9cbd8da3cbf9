-- Give a dead letter a fresh start at the tail of its queue.
-- KEYS[1] dead-letter list   KEYS[2] job hash   KEYS[3] queue list (of its priority)
-- KEYS[4] stats hash   KEYS[5] the queue's wake list   KEYS[6] the queue's owner ring
-- KEYS[7] index of failed ids   KEYS[8] the job's result key (a big result kept apart)
-- ARGV[1] id   ARGV[2] job channel
-- Returns 1 requeued, 0 when the id is not a dead letter.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
local nil_value = cmsgpack.pack(nil)
redis.call('HSET', KEYS[2],
  'status', cmsgpack.pack('queued'), 'progress', nil_value, 'result', nil_value,
  'short_result', nil_value, 'error', nil_value, 'worker', nil_value,
  'retries', cmsgpack.pack(0), 'processing_started', nil_value,
  'processing_finished', nil_value, 'last_error', nil_value, 'finished_by', nil_value)
redis.call('HDEL', KEYS[2], 'stored_result')
redis.call('DEL', KEYS[8])
redis.call('LPUSH', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
local owner = cmsgpack.unpack(redis.call('HGET', KEYS[2], 'owner') or cmsgpack.pack(nil))
if owner and not redis.call('LPOS', KEYS[6], owner) then redis.call('RPUSH', KEYS[6], owner) end
redis.call('LPUSH', KEYS[5], 1)
redis.call('LTRIM', KEYS[5], 0, 63)
redis.call('HINCRBY', KEYS[4], 'requeued', 1)
redis.call('PUBLISH', ARGV[2], cmsgpack.pack({ARGV[1], 'queued'}))
return 1
