-- Cancel a job: a waiting one (queued, scheduled or deferred) ends cancelled and
-- never runs; a running one is flagged (the listener's cancelled() turns True)
-- and its worker told: its finish, or its recovery once killed, then ends it
-- cancelled.
-- KEYS[1] job hash   KEYS[2] its queue list   KEYS[3] the namespace's key prefix
-- ARGV[1] id   ARGV[2] now   ARGV[3] control channel prefix (the worker id is appended)
-- Returns 1 cancelled while waiting, 2 stop requested while running, 0 already ended.
local P = KEYS[3]
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
status = cmsgpack.unpack(status)
local now = tonumber(ARGV[2])
if status == 'started' then
  redis.call('HSET', KEYS[1], 'cancel_requested', cmsgpack.pack(true))
  local worker = cmsgpack.unpack(redis.call('HGET', KEYS[1], 'worker'))
  if worker then redis.call('PUBLISH', ARGV[3] .. worker, 'cancel ' .. ARGV[1]) end
  return 2
end
if status == 'queued' then
  if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 0 then return 0 end
  lifecycle().removed_from_lane(P, KEYS[2], KEYS[1])
elseif status == 'scheduled' then
  redis.call('ZREM', lifecycle().scheduled_key(P), ARGV[1])
elseif status == 'deferred' then
  redis.call('HDEL', lifecycle().waiting_on_key(P), ARGV[1])
else
  return 0
end
lifecycle().record_end(P, ARGV[1], KEYS[1], CANCELLED(), 'cancelled', now)
lifecycle().settle(P, ARGV[1], KEYS[1], 'cancelled', now)
return 1
