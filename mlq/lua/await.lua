-- A waiter's first look at a job: its status, and, while it has not ended, a mark
-- that someone waits, so that the finish sends the (small) record along with its
-- event and the waiter needs no read afterwards (finish.lua). A job that has
-- already ended sends its (small) record at once, for the same reason.
-- KEYS[1] the job's hash. Returns false for no such job; the packed status while it
-- has not ended; else {packed status, its record as a flat list} ({packed status}
-- when the record is large: it is read apart).
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local now = cmsgpack.unpack(status)
if now ~= 'completed' and now ~= 'failed' and now ~= 'cancelled' and now ~= 'expired' then
  redis.call('HSET', KEYS[1], 'waited', cmsgpack.pack(true))
  return status
end
local flat = redis.call('HGETALL', KEYS[1])
local size = 0
for j = 2, #flat, 2 do size = size + #flat[j] end
if size > 65536 then return {status} end
return {status, flat}
