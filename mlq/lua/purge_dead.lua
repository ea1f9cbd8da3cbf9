-- Delete a dead letter and its record.
-- KEYS[1] dead-letter list   KEYS[2] job hash
-- ARGV[1] id
-- Returns 1 purged, 0 when the id is not a dead letter.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
return 1
