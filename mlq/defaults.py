"""Every default, each with the reason it has that value."""

from __future__ import annotations

#: Namespace used by the CLI and server when none is named.
NAMESPACE = "mlq_default"

#: Workers refresh their heartbeat this often (SPEC §6); cheap, and well inside the timeout.
HEARTBEAT_INTERVAL = 2.0

#: A worker silent this long is dead (SPEC §6): several missed beats, so a slow
#: network or a paused VM does not requeue running jobs.
HEARTBEAT_TIMEOUT = 15.0

#: How long one blocking take waits before the loop checks its stop flag again;
#: short enough that a stop request is honoured within a second.
BLOCK_TIMEOUT = 1.0

#: Reaper defaults, as the original documented them.
REAPER_INTERVAL = 60.0
REAPER_JOB_TIMEOUT = 300.0
MAX_RETRIES = 5

#: Callback: per attempt timeout, number of attempts, and the pauses between them (SPEC §5).
CALLBACK_TIMEOUT = 10.0
CALLBACK_ATTEMPTS = 3
CALLBACK_BACKOFF = (1.0, 3.0)
#: Threads sending callbacks per process: a hung endpoint then blocks only its own thread.
CALLBACK_THREADS = 4

#: In-process consuming threads started by create_listener.
CONCURRENCY = 1

#: Reconnect backoff when Redis goes away: start, cap (seconds). The cap bounds how
#: long a worker may sleep after the network is back before it takes jobs again.
RECONNECT_BACKOFF = (0.1, 2.0)
#: A heartbeat that failed is tried again after this long, not a whole interval:
#: after an outage it must land before the heartbeat timeout runs out.
HEARTBEAT_RETRY = 0.5

#: Default lifetime of a signed result link (SPEC §7).
LINK_TTL = 3600

#: Largest message a post accepts (packed bytes); matches the server's default body limit.
MAX_MESSAGE_SIZE = 64 * 1024 ** 2

#: Largest result a worker stores; Redis refuses single values over 512 MB, and a
#: clear failure here beats a protocol error there.
MAX_RESULT_SIZE = 256 * 1024 ** 2

#: A bytes or str result of this many bytes or more is kept in a key of its own
#: (Keys.result) rather than in the record, so that the HTTP server can send it a
#: chunk at a time instead of holding whole copies of it; smaller ones are cheap
#: to read whole.
STORED_APART = 1024 ** 2

#: Bytes the HTTP server reads (GETRANGE) and sends at a time of a result kept
#: apart: one such chunk per download is all the memory a download holds.
RESULT_CHUNK = 1024 ** 2

#: Memory the HTTP server keeps recently served results in (least recently used
#: out): well under what one busy server may use, large enough for a few images or
#: a song that browsers seek through.
RESULT_CACHE = 64 * 1024 ** 2

#: Largest registered function (pickled); listener code is small, a huge pickle is a mistake.
MAX_FUNCTION_SIZE = 16 * 1024 ** 2

#: Finished records are kept forever unless a TTL (seconds) is set (SPEC §7 "stored indefinitely").
RESULT_TTL = None

#: A worker running short jobs back to back holds their outcomes at most this
#: long (seconds) to record several in one step, and takes as many jobs at once
#: as it expects to finish in that time: results of short jobs appear within a
#: few milliseconds, and a long job is always taken and recorded alone.
RECORD_WITHIN = 0.005

#: Most jobs a worker takes in one step (see RECORD_WITHIN).
TAKE_AT_MOST = 32

#: Seconds an idle worker has to take a job a post handed to it. A live one takes it
#: at once (it is blocked on its inbox); one that has not is taken to be dead, and
#: any worker's sweep puts the job back.
HAND_OVER_WINDOW = 1.0
#: Seconds between sweeps; one worker of the namespace sweeps at a time (a lock).
SWEEP_INTERVAL = 0.5
#: Shortest idle claim (two blocking waits otherwise), so that a worker that blocks
#: only briefly can still be handed a job.
MIN_IDLE_CLAIM = 0.5
#: A requeue-all or purge-all whose claim was not touched for this long died midway:
#: the next one puts its dead letters back first.
DEAD_CLAIM_ABANDONED = 60.0

#: How long a post with `replicas=N` waits for N replicas to confirm it (WAIT).
#: Replicas on a healthy network answer within milliseconds; one that takes longer
#: is not keeping up, and the caller hears of it (NotReplicated).
REPLICAS_TIMEOUT = 2.0

#: Where a batching listener with batch_size="auto" starts, until a batch runs out
#: of memory; from then on, the largest batch that fitted (batching.Batches.fitted).
AUTO_BATCH = 32

#: Seconds a per-minute count of finished jobs is kept (Keys.history): the
#: dashboard charts the last hour.
HISTORY_KEEP = 2 * 3600

#: Bytes of field values up to which a record is small: a post hands it to an idle
#: worker whole, and a finish reads it whole (the Lua scripts use the same figure).
SMALL_RECORD = 64 * 1024

#: Seconds of one hash of posts' tokens (Keys.post_tokens): a post sent again after
#: a lost reply looks in the hashes of this window and the last (index_log.lua).
POST_TOKENS_WINDOW = 300
