-- Prepended to finish: the labelled counters and histograms of metrics.py (its
-- docstring spells the fields), summed over all the jobs one finish records, then
-- written with one HINCRBY per distinct field. FUNCTIONS_KEPT, OTHER_FUNCTION,
-- RUNTIME_PREFIX, WAIT_BOUNDS and WAIT_LABELS come from metrics.lua_prelude().
-- A finish records dozens of short jobs at a time: per job, only table lookups
-- keyed by the record's packed values; names are unpacked and field names built
-- once per distinct queue and function, when writing.
local metric_groups, metric_waits = {}, {}

local function wait_label(seconds)
  for i, bound in ipairs(WAIT_BOUNDS) do
    if seconds <= bound then return WAIT_LABELS[i] end
  end
  return WAIT_LABELS[#WAIT_LABELS]
end

-- One recorded attempt. queue, call_name, functions, posted, started: the record's
-- packed values (or nil); kind: a failure's error_kind; bucket: its run-time
-- field in the stats hash ('' when the run time is unknown).
local function count_attempt(queue, call_name, functions, posted, started, outcome, kind,
                             bucket, runtime)
  queue = queue or nil_value
  -- a packed name (a string) never equals a packed list: one table holds both
  local name = functions or nil_value
  if call_name and call_name ~= nil_value then name = call_name end
  local by_name = metric_groups[queue]
  if not by_name then by_name = {}; metric_groups[queue] = by_name end
  local group = by_name[name]
  if not group then
    group = {completed = 0, failed = {}, runtime = {}, runtime_sum = 0}
    by_name[name] = group
  end
  if outcome == 'completed' then
    group.completed = group.completed + 1
  elseif outcome == 'failed' then
    kind = kind or 'error'
    group.failed[kind] = (group.failed[kind] or 0) + 1
  end
  if bucket ~= '' then
    group.runtime[bucket] = (group.runtime[bucket] or 0) + 1
    group.runtime_sum = group.runtime_sum + tonumber(runtime)
  end
  posted, started = cmsgpack.unpack(posted or nil_value), cmsgpack.unpack(started or nil_value)
  if type(posted) == 'number' and type(started) == 'number' then
    local waited = math.max(started - posted, 0)
    local waits = metric_waits[queue]
    if not waits then waits = {sum = 0, counts = {}}; metric_waits[queue] = waits end
    local label = wait_label(waited)
    waits.counts[label] = (waits.counts[label] or 0) + 1
    waits.sum = waits.sum + waited
  end
end

-- A function label: a submitted call's name, else the listeners joined by ',',
-- else '' (every listener). A name joins the set of kept names while there are
-- fewer than FUNCTIONS_KEPT; later new names count as OTHER_FUNCTION.
local function function_label(kept, packed)
  local name = cmsgpack.unpack(packed)
  if type(name) == 'table' then name = table.concat(name, ',') end
  if type(name) ~= 'string' or name == '' then return '' end
  if redis.call('SISMEMBER', kept, name) == 1 then return name end
  if redis.call('SCARD', kept) < FUNCTIONS_KEPT then
    redis.call('SADD', kept, name)
    return name
  end
  return OTHER_FUNCTION
end

local function write_labelled(hash, kept)
  for packed_queue, by_name in pairs(metric_groups) do
    local queue = cmsgpack.unpack(packed_queue) or 'default'
    for packed_name, group in pairs(by_name) do
      local labels = queue .. '|' .. function_label(kept, packed_name)
      if group.completed > 0 then
        redis.call('HINCRBY', hash, 'completed|' .. labels, group.completed)
      end
      for kind, n in pairs(group.failed) do
        redis.call('HINCRBY', hash, 'failed|' .. labels .. '|' .. kind, n)
      end
      local timed = false
      for bucket, n in pairs(group.runtime) do
        local bound = string.sub(bucket, #RUNTIME_PREFIX + 1)
        redis.call('HINCRBY', hash, 'runtime|' .. labels .. '|' .. bound, n)
        timed = true
      end
      if timed then redis.call('HINCRBYFLOAT', hash, 'runtime_sum|' .. labels, group.runtime_sum) end
    end
    local waits = metric_waits[packed_queue]
    if waits then
      for label, n in pairs(waits.counts) do
        redis.call('HINCRBY', hash, 'wait|' .. queue .. '|' .. label, n)
      end
      redis.call('HINCRBYFLOAT', hash, 'wait_sum|' .. queue, waits.sum)
    end
  end
end
