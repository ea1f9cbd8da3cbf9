-- Prepended to finish and tally: the counters of the stats hash, the labelled
-- counters and histograms of metrics.py (its docstring spells the fields), the
-- per-minute history and the index of completed ids. A finish does not write them:
-- it appends what it counted, summed over all the jobs it records, and the ids it
-- completed to the tally list in one RPUSH (tally).
-- fold_tally adds the waiting entries up and writes one HINCRBY per distinct
-- field: once TALLY_FOLD_AT entries wait, and before anything reads the counts
-- (tally.lua). FUNCTIONS_KEPT, OTHER_FUNCTION, RUNTIME_PREFIX, WAIT_BOUNDS,
-- WAIT_LABELS and TALLY_FOLD_AT come from metrics.lua_prelude().
-- Per job, only table lookups keyed by the record's packed values; names are
-- unpacked and field names built once per distinct queue and function, when writing.
local metric_groups, metric_waits = {}, {}

local function wait_label(seconds)
  for i, bound in ipairs(WAIT_BOUNDS) do
    if seconds <= bound then return WAIT_LABELS[i] end
  end
  return WAIT_LABELS[#WAIT_LABELS]
end

local function add_counts(into, from)
  for key, n in pairs(from) do into[key] = (into[key] or 0) + n end
end

-- the counts of one queue's and function's jobs (both packed values)
local function group_of(queue, name)
  local by_name = metric_groups[queue]
  if not by_name then by_name = {}; metric_groups[queue] = by_name end
  local group = by_name[name]
  if not group then
    group = {completed = 0, failed = {}, runtime = {}, runtime_sum = 0}
    by_name[name] = group
  end
  return group
end

local function waits_of(queue)
  local waits = metric_waits[queue]
  if not waits then waits = {sum = 0, counts = {}}; metric_waits[queue] = waits end
  return waits
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
  local group = group_of(queue, name)
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
    local waits = waits_of(queue)
    local label = wait_label(waited)
    waits.counts[label] = (waits.counts[label] or 0) + 1
    waits.sum = waits.sum + waited
  end
end

-- A function label: a submitted call's name, else the listeners joined by ',',
-- else '' (every listener). A name joins the set of kept names while there are
-- fewer than FUNCTIONS_KEPT; later new names count as OTHER_FUNCTION.
local known_labels = {}
local function function_label(kept, packed)
  if known_labels[packed] then return known_labels[packed] end
  local label = nil
  local name = cmsgpack.unpack(packed)
  if type(name) == 'table' then name = table.concat(name, ',') end
  if type(name) ~= 'string' or name == '' then
    label = ''
  elseif redis.call('SISMEMBER', kept, name) == 1 then
    label = name
  elseif redis.call('SCARD', kept) < FUNCTIONS_KEPT then
    redis.call('SADD', kept, name)
    label = name
  else
    label = OTHER_FUNCTION
  end
  known_labels[packed] = label
  return label
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

-- counts: {completed, failed, {run-time bucket field = n}, run-time sum,
-- {'<minute>|completed' or '<minute>|failed' = n}}, the stats hash's and the
-- history's share of a finish; history: the per-minute keys' prefix.
local function write_counts(counts, stats, history, history_keep)
  if counts[1] > 0 then redis.call('HINCRBY', stats, 'completed', counts[1]) end
  if counts[2] > 0 then redis.call('HINCRBY', stats, 'failed', counts[2]) end
  if next(counts[3]) then
    for field, n in pairs(counts[3]) do redis.call('HINCRBY', stats, field, n) end
    redis.call('HINCRBYFLOAT', stats, 'runtime_sum', counts[4])
  end
  for field, n in pairs(counts[5]) do
    local minute, what = string.match(field, '^(%d+)|(%a+)$')
    local key = history .. minute
    -- the minute's first count starts its lifetime
    if redis.call('HINCRBY', key, what, n) == n then redis.call('EXPIRE', key, history_keep) end
  end
end

local function fold_tally(list, stats, labelled, kept, history, history_keep, completed_index)
  local entries = redis.call('LRANGE', list, 0, -1)
  if #entries == 0 then return end
  redis.call('DEL', list)
  metric_groups, metric_waits = {}, {}
  local counts, completed = {0, 0, {}, 0, {}}, {}
  for _, packed in ipairs(entries) do
    local entry = cmsgpack.unpack(packed)
    for _, id in ipairs(entry[4]) do completed[#completed + 1] = id end
    local its = entry[1]
    counts[1], counts[2], counts[4] = counts[1] + its[1], counts[2] + its[2], counts[4] + its[4]
    add_counts(counts[3], its[3])
    add_counts(counts[5], its[5])
    for queue, by_name in pairs(entry[2]) do
      for name, from in pairs(by_name) do
        -- names join the kept ones in the order their finishes came
        function_label(kept, name)
        local group = group_of(queue, name)
        group.completed = group.completed + from.completed
        group.runtime_sum = group.runtime_sum + from.runtime_sum
        add_counts(group.failed, from.failed)
        add_counts(group.runtime, from.runtime)
      end
    end
    for queue, from in pairs(entry[3]) do
      local waits = waits_of(queue)
      waits.sum = waits.sum + from.sum
      add_counts(waits.counts, from.counts)
    end
  end
  write_counts(counts, stats, history, history_keep)
  write_labelled(labelled, kept)
  zadd_ids(completed_index, completed)
  metric_groups, metric_waits = {}, {}
end

-- One finish's counts (see write_counts), the attempts count_attempt saw and the ids
-- it completed (for the index of completed ids, written by fold_tally).
local function tally(list, counts, completed, stats, labelled, kept, history, history_keep,
                     completed_index)
  if not next(metric_groups) then return end
  local entry = cmsgpack.pack({counts, metric_groups, metric_waits, completed})
  if redis.call('RPUSH', list, entry) >= TALLY_FOLD_AT then
    fold_tally(list, stats, labelled, kept, history, history_keep, completed_index)
  end
end
