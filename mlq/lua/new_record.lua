-- Prepended to post.lua and post_many.lua: the fields every new record starts
-- with; the caller sends only the job's own (msg, queue, timestamp ...).
local nil_value = cmsgpack.pack(nil)
local NEW_RECORD = {
  'status', cmsgpack.pack('queued'), 'retries', cmsgpack.pack(0), 'attempt', cmsgpack.pack(0),
  'worker', nil_value, 'processing_started', nil_value, 'processing_finished', nil_value,
  'progress', nil_value, 'short_result', nil_value, 'result', nil_value, 'error', nil_value,
  'last_error', nil_value}
