-- A post does not write the listing's indexes (every id, its queue's ids, the
-- queue names): it appends "<id> <queue>" to the index log (Keys.index_log) in one
-- RPUSH. Once POSTS_FOLD_AT entries wait, and before anything reads the indexes
-- (tally.lua, which Listing runs first), fold_posted writes them all: one ZADD per
-- index and one SADD. A finish's completed ids wait the same way in its tally
-- entry (metrics.lua).
local POSTS_FOLD_AT = 128

-- ZADD ids scored by themselves, in chunks: Lua's unpack takes a few thousand values
local function zadd_ids(key, ids)
  for first = 1, #ids, 1000 do
    local chunk = {}
    for i = first, math.min(first + 999, #ids) do
      chunk[#chunk + 1] = ids[i]
      chunk[#chunk + 1] = ids[i]
    end
    redis.call('ZADD', key, unpack(chunk))
  end
end

local function fold_posted(log, all_index, queues, queue_index_prefix)
  local entries = redis.call('LRANGE', log, 0, -1)
  if #entries == 0 then return end
  redis.call('DEL', log)
  local all, by_queue, names = {}, {}, {}
  for _, entry in ipairs(entries) do
    local id, queue = string.match(entry, '^(%d+) (.*)$')
    all[#all + 1] = id
    if not by_queue[queue] then
      by_queue[queue] = {}
      names[#names + 1] = queue
    end
    local ids = by_queue[queue]
    ids[#ids + 1] = id
  end
  zadd_ids(all_index, all)
  for queue, ids in pairs(by_queue) do zadd_ids(queue_index_prefix .. queue, ids) end
  redis.call('SADD', queues, unpack(names))
end

local function log_posted(log, id, queue, all_index, queues, queue_index_prefix)
  if redis.call('RPUSH', log, id .. ' ' .. queue) >= POSTS_FOLD_AT then
    fold_posted(log, all_index, queues, queue_index_prefix)
  end
end
