-- Record a running attempt's progress and announce it.
-- KEYS[1] job hash
-- ARGV[1] worker id   ARGV[2] attempt   ARGV[3] progress (msgpack)
-- ARGV[4] event payload (msgpack)   ARGV[5] job channel
-- Returns 1, or 0 when the attempt no longer owns the job.
local status = redis.call('HGET', KEYS[1], 'status')
if not status or cmsgpack.unpack(status) ~= 'started' then return 0 end
if cmsgpack.unpack(redis.call('HGET', KEYS[1], 'worker') or cmsgpack.pack(nil)) ~= ARGV[1] then return 0 end
if tostring(cmsgpack.unpack(redis.call('HGET', KEYS[1], 'attempt') or cmsgpack.pack(0))) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[4])
return 1
