-- Delete a dead letter and its record.
-- KEYS[1] dead-letter list   KEYS[2] job hash
-- KEYS[3] index of failed ids   KEYS[4] index of all ids   KEYS[5] index of its queue's ids
-- KEYS[6] the job's result key (a big result kept apart)
-- ARGV[1] id
-- Returns 1 purged, 0 when the id is not a dead letter.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2], KEYS[6])
for i = 3, 5 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
