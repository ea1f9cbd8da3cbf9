-- Add up what finishes counted and have not yet written (metrics.lua), and write
-- the indexes of the jobs posted lately (index_log.lua), so that a read of the
-- counters or the indexes that follows sees every job posted and ended.
-- KEYS[1] the tally list   KEYS[2] stats hash   KEYS[3] labelled metrics hash
-- KEYS[4] set of the function labels kept   KEYS[5] index of completed ids
-- KEYS[6] the index log   KEYS[7] index of all ids   KEYS[8] queue-names set
-- ARGV[1] the per-minute history's key prefix   ARGV[2] its keys' lifetime, s
-- ARGV[3] the queues' id index prefix   KEYS[9] the posts' tokens of these five minutes
fold_tally(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], KEYS[5])
fold_posted(KEYS[6], KEYS[7], KEYS[8], ARGV[3], KEYS[9])
return 0
