-- A change of the registry (register.lua, unregister.lua): the next sequence; the
-- key saying that the registry changed after the sequence before it
-- (Keys.registry_changed), which an idle take looks for (take.lua); and no idle
-- worker left listed, since a post hands a job without a sequence, to a worker
-- whose listeners were current when it began to wait (post.lua). Idle workers
-- take again, and wait as idle again once they loaded the registry.
-- Returns the new sequence.
local function registry_changed(KEYS, changed_prefix, idle_prefix)
  local before = redis.call('GET', KEYS[3]) or '0'
  local seq = redis.call('INCR', KEYS[3])
  redis.call('SET', changed_prefix .. before, 1)
  for _, queue in ipairs(redis.call('SUNION', KEYS[5], KEYS[6])) do
    redis.call('DEL', idle_prefix .. queue)
  end
  return seq
end
