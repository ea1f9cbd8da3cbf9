-- Add or replace a listener in the namespace's registry and tell every worker.
-- KEYS[1] registry hash   KEYS[2] registry order zset   KEYS[3] sequence counter
-- KEYS[4] registration times hash   KEYS[5] queue-names set   KEYS[6] idle queues set
-- ARGV[1] name   ARGV[2] signed pickle   ARGV[3] registry channel   ARGV[4] now
-- ARGV[5] changed-after key prefix   ARGV[6] idle workers' zset prefix
-- Returns 1.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[2], registry_changed(KEYS, ARGV[5], ARGV[6]), ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
