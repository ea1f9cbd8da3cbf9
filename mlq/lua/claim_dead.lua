-- Claim every dead letter for one requeue-all or purge-all, atomically: the ids
-- move to a list of that command's own, so two commands at once never act on the
-- same dead letter, and one that fails again at once stays dead.
-- KEYS[1] dead-letter list   KEYS[2] this command's claim list   KEYS[3] claims zset
-- (token -> when its command last showed life)
-- ARGV[1] token   ARGV[2] now   ARGV[3] claims last touched before this are
-- abandoned (their command died): their ids go back to the dead list first
-- ARGV[4] claim list prefix (a token completes each)
-- Returns the claimed ids, oldest first.
for _, stale in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[3])) do
  local abandoned = ARGV[4] .. stale
  while redis.call('LMOVE', abandoned, KEYS[1], 'RIGHT', 'LEFT') do end
  redis.call('ZREM', KEYS[3], stale)
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RENAME', KEYS[1], KEYS[2]) end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return redis.call('LRANGE', KEYS[2], 0, -1)
