-- A worker's finish of its last jobs and the take of its next, in one step: what
-- finish.lua and take.lua do one after the other (in front of this, each as a
-- function of its own KEYS and ARGV), for one script call instead of two.
-- KEYS: finish's, then take's.
-- ARGV[1] how many KEYS are finish's   ARGV[2] how many ARGV after these two are
-- finish's; then finish's ARGV, then take's
-- Returns {finish's reply, take's reply}.
local finish_keys, finish_args = tonumber(ARGV[1]), tonumber(ARGV[2])
local function part(from, first, last)
  local out = {}
  for i = first, last do out[#out + 1] = from[i] end
  return out
end
local finished = finish_step(part(KEYS, 1, finish_keys), part(ARGV, 3, 2 + finish_args))
return {finished, take_step(part(KEYS, finish_keys + 1, #KEYS),
                            part(ARGV, 3 + finish_args, #ARGV))}
