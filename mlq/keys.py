"""The only place a Redis key or channel name is spelled. Every key of a namespace
carries the same hash tag, ``{namespace}``: all of them live in one slot, so a Redis
Cluster can run each atomic step."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from .errors import InvalidName, JobNotFound

DEFAULT_QUEUE = "default"

#: Priority levels a job may have; higher runs first. Each level of a queue is a
#: list of its own, so taking stays O(1) and FIFO holds within a level.
PRIORITIES = range(0, 10)


#: Namespaces, queues and owners become parts of key names: with only these
#: characters no separator (":") or hash-tag brace can appear in one, so no two
#: distinct names can ever map to one key.
NAME_RULE = "[A-Za-z0-9_.-]{1,128}"
_NAME = re.compile(NAME_RULE + r"\Z")
#: Function names are hash fields, not key parts; they also take Python's
#: generated forms such as `<lambda>` and `outer.<locals>.inner`.
FUNCTION_NAME_RULE = "[A-Za-z0-9_.<>-]{1,128}"
_FUNCTION_NAME = re.compile(FUNCTION_NAME_RULE + r"\Z")


def check_job_id(job_id: object) -> str:
    """A job id as its key names it ("007" is job 7); JobNotFound for what no post made."""
    text = str(job_id)
    if not text.isdigit() or not text.isascii() or len(text) > 20:
        raise JobNotFound(f"no job {text!r}")
    return str(int(text))


def check_name(kind: str, name: object) -> str:
    """`name` when it follows NAME_RULE; InvalidName saying what is allowed otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidName(f"{kind} {name!r} is not a valid name: 1 to 128 characters "
                          "of A-Z, a-z, 0-9, '_', '.' and '-'")
    return name


def check_function_name(name: object) -> str:
    """`name` when it follows FUNCTION_NAME_RULE; InvalidName otherwise."""
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        raise InvalidName(f"function name {name!r} is not valid: 1 to 128 characters "
                          "of A-Z, a-z, 0-9, '_', '.', '-', '<' and '>'")
    return name


def _escape_glob(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


@dataclass(frozen=True)
class Keys:
    """Key and channel names of one namespace."""

    namespace: str

    @cached_property
    def prefix(self) -> str:
        return f"mlq:{{{self.namespace}}}:"

    @property
    def pattern(self) -> str:
        """SCAN pattern matching every key of the namespace and nothing else."""
        return _escape_glob(self.prefix) + "*"

    # -- jobs -------------------------------------------------------------
    @property
    def counter(self) -> str:
        return self.prefix + "counter"

    @property
    def job_prefix(self) -> str:
        return self.prefix + "job:"

    def job(self, job_id: str | int) -> str:
        return f"{self.job_prefix}{job_id}"

    def result(self, job_id: str | int) -> str:
        """A big result's bytes apart from its record (defaults.STORED_APART), read in
        chunks. Only the step completing the job writes it; any deleting the record too."""
        return f"{self.prefix}result:{job_id}"

    def stream(self, job_id: str | int) -> str:
        """A job's streamed chunks (a Redis Stream, capped; streams.py)."""
        return f"{self.prefix}stream:{job_id}"

    def session(self, digest: str) -> str:
        """A dashboard login: its scope, until it expires or its user logs out."""
        return f"{self.prefix}session:{digest}"

    def posted(self, token: str) -> str:
        """Short-lived: the id one post made, so a re-sent post makes no second job."""
        return f"{self.prefix}posted:{token}"

    def post_tokens(self, window: int) -> str:
        """Hash: token -> id of the posts of one POST_TOKENS_WINDOW (index_log.lua)."""
        return f"{self.prefix}post_tokens:{window}"

    def queue(self, name: str = DEFAULT_QUEUE, priority: int = 0) -> str:
        """The list of a queue's jobs at one priority level (0, the default, has the plain name)."""
        base = f"{self.prefix}queue:{name}"
        return base if priority == 0 else f"{base}:p{priority}"

    def lanes(self, name: str = DEFAULT_QUEUE) -> list[str]:
        """A queue's lists, highest priority first: the order a worker takes from them."""
        return [self.queue(name, p) for p in reversed(PRIORITIES)]

    def owned(self, name: str, owner: str) -> str:
        """The list of one owner's jobs in a queue (fair sharing between owners)."""
        return f"{self.owned_prefix(name)}{owner}"

    def lane(self, name: str = DEFAULT_QUEUE, priority: int = 0, owner: str | None = None) -> str:
        """A job's list: its queue's at its priority, or its owner's at the default one."""
        return self.owned(name, owner) if owner and not priority else self.queue(name, priority)

    def lane_joined(self, name: str = DEFAULT_QUEUE, priority: int = 0,
                    owner: str | None = None) -> str:
        """Counter of the jobs that ever joined a lane at its back: each keeps its number
        (lane_seq), so position.py counts the jobs behind it without walking the list."""
        return self.lane(name, priority, owner) + ":joined"

    def lane_removed(self, name: str = DEFAULT_QUEUE, priority: int = 0,
                     owner: str | None = None) -> str:
        """Zset of the lane_seq of jobs taken out of a lane's middle (cancelled, expired)."""
        return self.lane(name, priority, owner) + ":removed"

    def owned_prefix(self, name: str) -> str:
        return f"{self.prefix}owned:{name}:"

    def owners(self, name: str = DEFAULT_QUEUE) -> str:
        """Ring (list) of the owners with jobs waiting in a queue; rotated to share fairly."""
        return f"{self.prefix}owners:{name}"

    @property
    def owner_running(self) -> str:
        """Hash: owner -> jobs of that owner running now (for the per-owner limit)."""
        return self.prefix + "owner_running"

    # -- indexes for listing (dashboards page through these, newest first) ---
    @property
    def index_all(self) -> str:
        """Sorted set of every job id, scored by id."""
        return self.prefix + "index:all"

    def index_status(self, status: str) -> str:
        """Sorted set of the ids in one status, scored by id."""
        return f"{self.prefix}index:status:{status}"

    def index_queue(self, name: str) -> str:
        """Sorted set of the ids posted to one queue, scored by id."""
        return f"{self.prefix}index:queue:{name}"

    def index_scratch(self, token: str) -> str:
        """A short-lived intersection of two indexes (a listing by status and queue)."""
        return f"{self.prefix}index:tmp:{token}"

    def wake(self, name: str = DEFAULT_QUEUE) -> str:
        """Tokens pushed when work arrives; idle workers block on them (BLPOP), then take."""
        return f"{self.prefix}wake:{name}"

    def idle(self, name: str = DEFAULT_QUEUE) -> str:
        """Zset of the workers idle on a queue, scored by when their claim lapses; one
        idle on several queues is '+' and its id, with an idle_flag (post.lua)."""
        return f"{self.prefix}idlers:{name}"

    @property
    def sweep_lock(self) -> str:
        """Held for a sweep interval by the one worker that sweeps for all."""
        return self.prefix + "sweep_lock"

    def idle_flag(self, worker_id: str) -> str:
        """Set while a worker on several queues waits idle: a post handing it a job clears it."""
        return f"{self.prefix}idle_flag:{worker_id}"

    @property
    def idle_queues(self) -> str:
        """Set of the queues workers waited idle on (a registry change clears them)."""
        return self.prefix + "idle_queues"

    def inbox(self, worker_id: str) -> str:
        """List an idle worker blocks on: the records of jobs posts started for it."""
        return f"{self.prefix}inbox:{worker_id}"

    @property
    def queues(self) -> str:
        """Set of queue names that ever held a job."""
        return self.prefix + "queues"

    def processing(self, worker_id: str) -> str:
        """List a worker's blocking take moves ids into: what it holds right now."""
        return f"{self.prefix}processing:{worker_id}"

    @property
    def running(self) -> str:
        """Sorted set: started job id -> start time, for the reaper's timeout sweep."""
        return self.prefix + "running"

    @property
    def dead(self) -> str:
        return self.prefix + "dead"

    @property
    def dead_claim_prefix(self) -> str:
        """Dead letters one requeue-all or purge-all has claimed (a token completes it)."""
        return self.prefix + "dead_claim:"

    def dead_claim(self, token: str) -> str:
        return self.dead_claim_prefix + token

    @property
    def dead_claims(self) -> str:
        """Zset of the claims in progress: token -> when its command last showed life."""
        return self.prefix + "dead_claims"

    # -- lifecycle: waiting for a time, for other jobs, for a resume ---------
    @property
    def scheduled(self) -> str:
        """Zset: id of a job waiting for its time (a delay, a retry's backoff) -> when it
        is due. Any worker's take step moves due ones to their queue."""
        return self.prefix + "scheduled"

    @property
    def expiring(self) -> str:
        """Zset: id of a waiting job with a start-by deadline -> that deadline."""
        return self.prefix + "expiring"

    @property
    def paused(self) -> str:
        """Set of paused queue names: workers take nothing from them."""
        return self.prefix + "paused"

    def dedup(self, key: str) -> str:
        """The id of the live job posted with this dedup key (post(key=...))."""
        return f"{self.prefix}dedup:{key}"

    def dependents(self, job_id: str | int) -> str:
        """Set of the ids of deferred jobs that wait for this job."""
        return f"{self.prefix}dependents:{job_id}"

    @property
    def waiting_on(self) -> str:
        """Hash: deferred job id -> how many of its dependencies have not completed."""
        return self.prefix + "waiting_on"

    @property
    def schedules(self) -> str:
        """Hash: periodic job name -> its packed definition (MLQ.schedule)."""
        return self.prefix + "schedules"

    @property
    def schedule_times(self) -> str:
        """Zset: periodic job name -> when its next slot is due."""
        return self.prefix + "schedule_times"

    @property
    def stats(self) -> str:
        """Hash of counters shared by every server instance (metrics)."""
        return self.prefix + "stats"

    @property
    def history_prefix(self) -> str:
        """Per-minute hashes of the jobs completed and failed, named by the minute
        (epoch seconds // 60), expiring after defaults.HISTORY_KEEP: the dashboard's chart."""
        return self.prefix + "history:"

    def history(self, minute: int) -> str:
        return f"{self.history_prefix}{minute}"

    @property
    def metrics(self) -> str:
        """Hash of /metrics' labelled counters and histograms (metrics.py spells them)."""
        return self.prefix + "metrics"

    @property
    def index_log(self) -> str:
        """List of the ids posted lately, not yet in the indexes (index_log.lua)."""
        return self.prefix + "index_log"

    @property
    def tally(self) -> str:
        """List of what finish steps counted, not yet added to the counters (metrics.lua)."""
        return self.prefix + "tally"

    @property
    def metric_functions(self) -> str:
        """Set of the function labels counted by name (metrics.FUNCTIONS_KEPT at most)."""
        return self.prefix + "metrics:functions"

    # -- workers ----------------------------------------------------------
    @property
    def workers(self) -> str:
        """Set of worker ids that may hold jobs."""
        return self.prefix + "workers"

    def heartbeat(self, worker_id: str) -> str:
        """Key with a TTL; gone means the worker is dead."""
        return f"{self.prefix}heartbeat:{worker_id}"

    # -- listeners and data ----------------------------------------------
    @property
    def registry(self) -> str:
        """Hash: function name -> signed cloudpickle."""
        return self.prefix + "registry"

    @property
    def registry_order(self) -> str:
        """Sorted set: function name -> registration sequence."""
        return self.prefix + "registry:order"

    @property
    def registry_times(self) -> str:
        """Hash: function name -> when it was registered (epoch seconds)."""
        return self.prefix + "registry:times"

    @property
    def registry_seq(self) -> str:
        return self.prefix + "registry:seq"

    def registry_changed(self, seq: str) -> str:
        """Exists once the registry changed after sequence `seq` (registry.lua)."""
        return f"{self.prefix}registry:after:{seq}"

    def data(self, key: str) -> str:
        return f"{self.prefix}data:{key}"

    # -- channels ---------------------------------------------------------
    def job_channel(self, job_id: str | int) -> str:
        return f"{self.prefix}events:{job_id}"

    def chunks_channel(self, job_id: str | int) -> str:
        """An empty notice per entry of the job's stream: no blocking read per reader."""
        return f"{self.prefix}chunks:{job_id}"

    @property
    def events_pattern(self) -> str:
        """PSUBSCRIBE pattern of every job's events: one subscription per process."""
        return _escape_glob(self.prefix + "events:") + "*"

    @property
    def chunks_pattern(self) -> str:
        """PSUBSCRIBE pattern for every job's chunk notices."""
        return _escape_glob(self.prefix + "chunks:") + "*"

    @property
    def registry_channel(self) -> str:
        return self.prefix + "registry:changed"

    def control_channel(self, worker_id: str) -> str:
        """Orders to one worker (e.g. stop the job that timed out)."""
        return f"{self.prefix}control:{worker_id}"

    def control_pattern(self, worker_id_prefix: str) -> str:
        """PSUBSCRIBE pattern for the control channels of ids starting with the prefix."""
        return _escape_glob(self.control_channel(worker_id_prefix)) + "*"


#: The names above that a Lua step builds itself, because it learns them from a
#: record (a dependent's id, a waiting job's queue) rather than from its KEYS.
#: Each builder takes the namespace's prefix P (Keys.prefix, the last of such a
#: step's KEYS, so the step stays in the namespace's slot). tests/test_keys.py
#: checks that each gives the same name as its method.
LUA_KEY_BUILDERS = """
local function job_hash(P, id) return P .. 'job:' .. id end
local function lane_key(P, queue, priority, owner)
  if (priority or 0) ~= 0 then return P .. 'queue:' .. queue .. ':p' .. priority end
  if owner and owner ~= '' then return P .. 'owned:' .. queue .. ':' .. owner end
  return P .. 'queue:' .. queue
end
local function owners_key(P, queue) return P .. 'owners:' .. queue end
local function wake_key(P, queue) return P .. 'wake:' .. queue end
local function idle_key(P, queue) return P .. 'idlers:' .. queue end
local function channel_key(P, id) return P .. 'events:' .. id end
local function chunks_channel_key(P, id) return P .. 'chunks:' .. id end
local function stream_key(P, id) return P .. 'stream:' .. id end
local function status_index_key(P, status) return P .. 'index:status:' .. status end
local function dedup_key(P, key) return P .. 'dedup:' .. key end
local function dependents_key(P, id) return P .. 'dependents:' .. id end
local function scheduled_key(P) return P .. 'scheduled' end
local function expiring_key(P) return P .. 'expiring' end
local function paused_key(P) return P .. 'paused' end
local function waiting_on_key(P) return P .. 'waiting_on' end
local function stats_key(P) return P .. 'stats' end
local function schedule_times_key(P) return P .. 'schedule_times' end
"""

#: Builders every step that puts jobs in a lane has (lanes.lua): the names of a
#: lane's own counter and removals (Keys.lane_joined, Keys.lane_removed), from
#: the lane's key, which such a step always holds.
LUA_LANE_BUILDERS = """
local function joined_key(lane) return lane .. ':joined' end
local function removed_key(lane) return lane .. ':removed' end
"""
