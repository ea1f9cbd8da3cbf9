-- Remove a listener from the registry and tell every worker.
-- KEYS[1] registry hash   KEYS[2] registry order zset   KEYS[3] sequence counter
-- KEYS[4] registration times hash   KEYS[5] queue-names set   KEYS[6] idle queues set
-- ARGV[1] name   ARGV[2] registry channel   ARGV[3] changed-after key prefix
-- ARGV[4] idle workers' zset prefix
-- Returns 1 removed, 0 unknown.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
registry_changed(KEYS, ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
