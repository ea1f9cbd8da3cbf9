-- Drop a dead worker from the worker set once it holds nothing.
-- KEYS[1] workers set   KEYS[2] its heartbeat key   KEYS[3] its processing list
-- ARGV[1] worker id
-- Returns 1 forgotten, 0 when it is alive again or still holds jobs.
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('LLEN', KEYS[3]) > 0 then return 0 end
return redis.call('SREM', KEYS[1], ARGV[1])
