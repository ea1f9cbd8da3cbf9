-- Prepended to take.lua (after lifecycle.lua): start one queued
-- job on a worker. The started record is patched in the HGETALL answer instead
-- of read twice.
-- Returns the record (flat field, value list), or nil when the id was a stray
-- (purged, cancelled or cleared while queued) or its deadline passed (it
-- expires here instead): dropped from the processing list.
-- The caller adds the id to the running set.
local function start_job(P, job_key, id, worker, now, processing, owner_running, channel)
  local flat = redis.call('HGETALL', job_key)
  local at = {}
  for i = 1, #flat, 2 do at[flat[i]] = i + 1 end
  if not at.status or cmsgpack.unpack(flat[at.status]) ~= 'queued' then
    redis.call('LREM', processing, 1, id)
    return nil
  end
  local deadline = at.expires_at and cmsgpack.unpack(flat[at.expires_at])
  if deadline then
    if deadline <= now then
      redis.call('LREM', processing, 1, id)
      lifecycle().record_end(P, id, job_key, EXPIRED(), 'expired', now)
      lifecycle().settle(P, id, job_key, 'expired', now)
      return nil
    end
    redis.call('ZREM', lifecycle().expiring_key(P), id)
  end
  local attempt = 1
  if at.attempt then attempt = (cmsgpack.unpack(flat[at.attempt]) or 0) + 1 end
  local changes = {
    'status', cmsgpack.pack('started'),
    'worker', cmsgpack.pack(worker),
    'processing_started', cmsgpack.pack(now),
    'processing_finished', cmsgpack.pack(nil),
    'progress', cmsgpack.pack(0),
    'attempt', cmsgpack.pack(attempt)}
  redis.call('HSET', job_key, unpack(changes))
  for i = 1, #changes, 2 do
    local slot = at[changes[i]]
    if slot then
      flat[slot] = changes[i + 1]
    else
      flat[#flat + 1] = changes[i]
      flat[#flat + 1] = changes[i + 1]
    end
  end
  if at.owner and owner_running then
    local owner = cmsgpack.unpack(flat[at.owner])
    if owner then redis.call('HINCRBY', owner_running, owner, 1) end
  end
  redis.call('PUBLISH', channel .. id, cmsgpack.pack({id, 'started', 0}))
  return flat
end

