-- A post does not write the listing's indexes (every id, its queue's ids, the
-- queue names): it appends "<id> <queue>" to the index log (Keys.index_log) in one
-- RPUSH, followed by " <token>" for a post whose client would know that it sends
-- it again (post.lua). A worker's sweep (reaper.Sweep), anything that reads the
-- indexes first (tally.lua, which Listing runs), and a post that finds
-- POSTS_FOLD_AT entries waiting (no worker sweeps) run fold_posted: it writes them all:
-- one ZADD per index, one SADD, and the tokens in one HSET to the hash of the five
-- minutes (Keys.post_tokens), where a post sent again finds them (posted_token). A
-- finish's completed ids wait the same way in its tally entry (metrics.lua).
-- (a fold holds Redis up for a while: off the round trips of posts, as a rule)
local POSTS_FOLD_AT = 1024

-- `command` on `key` with `values` in chunks: Lua's unpack takes a few thousand
-- values; `double`: each value twice (ZADD of ids scored by themselves)
local function in_chunks(command, key, values, double)
  for first = 1, #values, 1000 do
    local chunk = {}
    for i = first, math.min(first + 999, #values) do
      chunk[#chunk + 1] = values[i]
      if double then chunk[#chunk + 1] = values[i] end
    end
    redis.call(command, key, unpack(chunk))
  end
end

local function zadd_ids(key, ids) in_chunks('ZADD', key, ids, true) end

local function fold_posted(log, all_index, queues, queue_index_prefix, tokens)
  local entries = redis.call('LRANGE', log, 0, -1)
  if #entries == 0 then return end
  redis.call('DEL', log)
  local all, by_queue, names, by_token = {}, {}, {}, {}
  for _, entry in ipairs(entries) do
    local id, queue, token = string.match(entry, '^(%d+) (%S+) ?(%S*)$')
    if token ~= '' then
      by_token[#by_token + 1] = token
      by_token[#by_token + 1] = id
    end
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
  if #by_token > 0 then
    -- a post is sent again within seconds: the hash of the five minutes after it
    -- lives ten, and a post sent again looks in the last two
    in_chunks('HSET', tokens, by_token)
    redis.call('EXPIRE', tokens, 600)
  end
end

-- `token`: nil, or the token the post's index log entry keeps
local function log_posted(log, id, queue, token, all_index, queues, queue_index_prefix, tokens)
  local entry = id .. ' ' .. queue
  if token then entry = entry .. ' ' .. token end
  if redis.call('RPUSH', log, entry) >= POSTS_FOLD_AT then
    fold_posted(log, all_index, queues, queue_index_prefix, tokens)
  end
end

-- The id a post with `token` made, if it was sent before: in the index log still,
-- or in the tokens' hash of these five minutes or the last.
local function posted_token(log, tokens_now, tokens_before, token)
  for _, entry in ipairs(redis.call('LRANGE', log, 0, -1)) do
    local id, kept = string.match(entry, '^(%d+) %S+ (%S+)$')
    if kept == token then return id end
  end
  return redis.call('HGET', tokens_now, token) or redis.call('HGET', tokens_before, token)
end
