-- Add up what finishes counted and have not yet written (metrics.lua), so that a
-- read of the counters that follows sees every job that has ended.
-- KEYS[1] the tally list   KEYS[2] stats hash   KEYS[3] labelled metrics hash
-- KEYS[4] set of the function labels kept
-- ARGV[1] the per-minute history's key prefix   ARGV[2] its keys' lifetime, s
fold_tally(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2])
return 0
