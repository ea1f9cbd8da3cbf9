-- A worker's finish of its last jobs and the take of its next, in one step: what
-- finish.lua and take.lua do one after the other (in front of this, each as a
-- function of its own KEYS and ARGV), for one script call instead of two.
-- KEYS: finish's, then take's.
-- ARGV[1] how many KEYS are finish's   ARGV[2] how many ARGV after these three are
-- finish's   ARGV[3] seconds a BLPOP of the worker's inbox that follows in the same
-- round trip blocks ('' none: worker_link.py); then finish's ARGV, then take's
-- Returns {finish's reply, take's reply, 1 if it nudged the BLPOP, else 0}.
local finish_keys, finish_args, blocks_for = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local function part(from, first, last)
  local out = {}
  for i = first, last do out[#out + 1] = from[i] end
  return out
end
local finished = finish_step(part(KEYS, 1, finish_keys), part(ARGV, 4, 3 + finish_args))
local take_keys, take_args = part(KEYS, finish_keys + 1, #KEYS), part(ARGV, 4 + finish_args, #ARGV)
local taken = take_step(take_keys, take_args)
-- The BLPOP must not block when the take started jobs or found the worker's
-- listeners out of date (a table), or when the next scheduled job is due before it
-- would end: a note of nothing on the worker's inbox (take's KEYS[5]) ends it at
-- once. The note reads as a large record's hand-over, should a BLPOP of later pop it.
local nudged = 0
if blocks_for ~= '' then
  local now = tonumber(take_args[3])
  if type(taken) == 'table' or (taken and tonumber(taken) < now + tonumber(blocks_for)) then
    redis.call('LPUSH', take_keys[5], cmsgpack.pack({now}))
    nudged = 1
  end
end
return {finished, taken, nudged}
