-- A waiter's first look at a job: its status, and, while it has not ended, a mark
-- that someone waits, so that the finish sends the (small) record along with its
-- event and the waiter needs no read afterwards (finish.lua).
-- KEYS[1] the job's hash. Returns the packed status, or false for no such job.
local status = redis.call('HGET', KEYS[1], 'status')
if status then
  local now = cmsgpack.unpack(status)
  if now ~= 'completed' and now ~= 'failed' and now ~= 'cancelled' and now ~= 'expired' then
    redis.call('HSET', KEYS[1], 'waited', cmsgpack.pack(true))
  end
end
return status
