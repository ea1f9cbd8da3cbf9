-- Prepended to the steps that put jobs in a queue (post, post_many, requeue,
-- requeue_dead).

-- Wake one worker blocked on the queue's wake list. A token is only a hint, never
-- the work itself, so the list stays short: 64 tokens wake as many workers.
local function wake(wake_list)
  redis.call('LPUSH', wake_list, 1)
  redis.call('LTRIM', wake_list, 0, 63)
end

-- Jobs joined a queue other than by a post's own step (requeued, due, released by
-- their dependencies, posted many at once): wake a worker for them, and take the
-- queue's workers off its idle list. A post hands its job to an idle worker
-- without looking at the lanes (post.lua): that keeps the queue's order only while
-- a queue with idle workers has no job waiting. They wait as idle again once a
-- take finds nothing.
local function wake_for_joined(wake_list, idle_list)
  wake(wake_list)
  redis.call('DEL', idle_list)
end

-- Put an owner with waiting jobs on its queue's ring of owners, once. `first`: at
-- the head (a job taken back has waited already), else at the tail (a new owner
-- waits its turn). No owner (nil or ''): nothing to do.
local function join_ring(ring, owner, first)
  if owner and owner ~= '' and not redis.call('LPOS', ring, owner) then
    redis.call(first and 'LPUSH' or 'RPUSH', ring, owner)
  end
end

-- Number `count` jobs joining a lane at its back (an LPUSH, in push order): the
-- first one's number. A job keeps its number in its record (lane_seq), so that
-- position.lua counts the jobs behind it without walking the list.
local function number_joining(lane, count)
  return redis.call('INCRBY', joined_key(lane), count) - count + 1
end
