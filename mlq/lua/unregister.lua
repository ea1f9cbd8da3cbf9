-- Remove a listener from the registry and tell every worker.
-- KEYS[1] registry hash   KEYS[2] registry order zset   KEYS[3] sequence counter
-- KEYS[4] registration times hash
-- ARGV[1] name   ARGV[2] registry channel
-- Returns 1 removed, 0 unknown.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
