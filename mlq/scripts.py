"""The atomic steps: one Lua file each in mlq/lua/, one typed wrapper each (the
keys and arguments of a producer's steps are built in steps.py).

Each wrapper passes every key through KEYS, but for the steps that learn or
walk job ids inside the script (post, post_many, take, finish): they get the
job key prefix and append the id, and the key is still in the namespace's
hash-tag slot. Lua shared by several steps is put in front of each (_PRELUDES).
"""

from __future__ import annotations

import functools
import os
import time
from importlib import resources
from typing import Any, Sequence

import redis

from . import defaults
from .errors import JobNotFound, NotReplicated
from .keys import LUA_KEY_BUILDERS, LUA_LANE_BUILDERS, PRIORITIES, Keys
from .metrics import lua_prelude as metrics_prelude
from .roundtrips import SharedRoundTrips, Together
from .steps import Lifecycle, Steps
from .record import STORED_RESULT, first_look, lua_prelude
from .serialization import ApartResult, pack

_NIL = pack(None)

_SCRIPT_NAMES = (
    "post", "post_many", "take", "finish", "progress", "requeue", "requeue_dead",
    "purge_dead", "claim_dead", "forget_worker", "register", "unregister", "cancel",
    "position", "await", "tally", "finish_take",
)


def _source(name: str) -> str:
    return resources.files("mlq").joinpath("lua", f"{name}.lua").read_text("utf-8")


#: Lua shared by several steps, put in front of each (a script cannot import). The
#: fields each outcome writes come from record.py, where every field is declared;
#: the key names a step builds itself from keys.py.
_RECORD, _START = lua_prelude(), _source("start_job")
_LANES = LUA_LANE_BUILDERS + _source("lanes")
#: lifecycle() builds the lifecycle functions the first time a call needs them (and
#: keys.py's builders with them): a step runs its whole prelude on every call.
_LIFECYCLE = (_RECORD + _LANES + "local lifecycle_built\nlocal function lifecycle()\n"
              "if lifecycle_built then return lifecycle_built end\n"
              + LUA_KEY_BUILDERS + _source("lifecycle") + "end\n")
_METRICS = _source("index_log") + metrics_prelude() + _source("metrics")
_PRELUDES = {"post": _LIFECYCLE + _source("index_log"), "post_many": _LIFECYCLE,
             "requeue_dead": _RECORD + _LANES, "requeue": _LIFECYCLE,
             "cancel": _LIFECYCLE, "take": _LIFECYCLE + _START,
             "finish": _LIFECYCLE + _METRICS, "tally": _RECORD + _METRICS,
             "register": _source("registry"), "unregister": _source("registry"),
             # each step a function whose parameters stand in for KEYS and ARGV
             "finish_take": _LIFECYCLE + _METRICS + _START + "".join(
                 f"local function {step}_step(KEYS, ARGV)\n{_source(step)}\nend\n"
                 for step in ("finish", "take"))}


@functools.lru_cache(maxsize=None)
def script_source(name: str) -> str:
    """The whole Lua of step `name`, its prelude in front (what Scripts registers,
    and what the asyncio client registers on its own client)."""
    return _PRELUDES.get(name, "") + _source(name)


def replicated(name: str, reply: Any, reached: Any, replicas: int) -> Any:
    """`reply`, once `reached` (WAIT's answer) is at least `replicas`; NotReplicated
    naming the jobs the step made otherwise."""
    if int(reached) < replicas:
        ids = [str(reply[0] if isinstance(reply, list) else reply)] if name == "post" \
            else id_range(reply)
        raise NotReplicated(ids, int(reached), replicas, defaults.REPLICAS_TIMEOUT)
    return reply


def id_range(reply: Sequence[Any]) -> list[str]:
    """The ids of a post_many step's reply: [first, last]."""
    return [str(i) for i in range(int(reply[0]), int(reply[1]) + 1)]


class Scripts(Steps):
    """The Lua steps of one namespace, bound to one Redis client."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(keys)
        self.client = client
        self.round_trips = SharedRoundTrips(client)
        self._scripts = {name: client.register_script(script_source(name))
                         for name in _SCRIPT_NAMES}

    def _run(self, name: str, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> Any:
        if isinstance(client, Together):
            client.calls.append((self._scripts[name], (len(keys), *keys, *args)))
            return client
        return self._scripts[name](keys=list(keys), args=list(args), client=client or self.client)

    def together(self) -> Together:
        """Steps to send in one round trip: pass it as each step's `client`, then
        call its send()."""
        return Together(self.round_trips, self._scripts)

    def post(self, queue: str, fields: Sequence[Any], client: Any = None,
             priority: int = 0, owner: str | None = None, token: str | None = None,
             replicas: int = 0, lifecycle: Lifecycle | None = None) -> Any:
        """Post one record; `token` names the post (a random one by default): the
        same token sent again returns the first post's id. `replicas`: see
        _confirmed. `lifecycle`: when it is due, its deadline, its dedup key and
        what it depends on. The reply: the new id, or [id] of the live job that
        holds the dedup key (no job made)."""
        life = lifecycle or Lifecycle()
        if client is not None or token is not None or life.key or life.depends_on:
            keys, args = self.post_call(queue, fields, priority, owner, token, life)
            return self._run("post", keys, args, client) if client is not None \
                else self._confirmed("post", (len(keys), *keys, *args), replicas)
        # sent through the shared round trips, which know when they send it again
        token = os.urandom(9).hex()
        keys, args = self.post_call(queue, fields, priority, owner, token, life, "first " + token)
        again = [*args]
        again[7] = "again " + token
        return self._confirmed("post", (len(keys), *keys, *args), replicas,
                               (len(keys), *keys, *again))

    def _confirmed(self, name: str, call: Sequence[Any], replicas: int,
                   again: Sequence[Any] | None = None) -> Any:
        """The script's reply; with `replicas`, once that many replicas hold what it
        wrote (WAIT right after it, on the same connection), else NotReplicated.
        `again`: the call to send instead once it may have run (SharedRoundTrips)."""
        if not replicas:
            return self.round_trips.evalsha_many([(self._scripts[name], call, again)])[0]
        reply, reached = self.round_trips.evalsha_many(
            [(self._scripts[name], call, again),
             (None, ("WAIT", replicas, int(defaults.REPLICAS_TIMEOUT * 1000)))])
        return replicated(name, reply, reached, replicas)

    def post_many(self, queue: str, records: Sequence[Sequence[Any]], priority: int = 0,
                  owner: str | None = None, replicas: int = 0,
                  lifecycle: Lifecycle | None = None) -> list[str]:
        """Post records (field, value lists) to one queue in one step; their ids.
        `lifecycle`: when they are due and their deadline (no key, no dependencies)."""
        keys, args = self.post_many_call(queue, records, priority, owner, lifecycle)
        return id_range(self._confirmed("post_many", (len(keys), *keys, *args), replicas))

    def take(self, queues: str | Sequence[str], worker_id: str, now: float,
             count: int = 1, fair: bool = False, max_running_per_owner: int = 0,
             strays: bool = True, client: Any = None, was_idle: bool = False,
             idle_for: float = 0.0, strays_only: bool = False,
             registry_seq: str | None = None) -> Any:
        """Start up to `count` jobs on a worker (see take.lua for the flags);
        `idle_for`: when none is there, wait as idle, claiming it for this many seconds;
        `registry_seq`: the registry sequence the worker loaded (None: none yet)."""
        names = (queues,) if isinstance(queues, str) else tuple(queues)
        keys, owned_prefixes, lanes = self._fixed(("take", names, worker_id),
                                                  lambda: self._take_parts(names, worker_id))
        mode = "".join(letter for letter, on in (("s", strays), ("f", fair), ("i", was_idle),
                                                  ("o", strays_only)) if on)
        args = [self.keys.job_prefix, worker_id, repr(now), self.keys.job_channel(""), mode,
                count, max_running_per_owner, lanes, len(PRIORITIES),
                str(int(idle_for * 1000)), *owned_prefixes, *names]
        changed = (self.keys.registry_seq if registry_seq is None
                   else self.keys.registry_changed(registry_seq))
        return self._run("take", [*keys, changed], args, client)

    def _take_parts(self, names: tuple[str, ...], worker_id: str
                    ) -> tuple[list[str], list[str], int]:
        """A worker's take keys, its queues' owner list prefixes, its number of lanes."""
        k = self.keys
        lanes = [lane for name in names for lane in k.lanes(name)]
        keys = [k.processing(worker_id), k.running, k.registry_seq, k.owner_running,
                k.inbox(worker_id), k.idle_flag(worker_id), *lanes,
                *[k.owners(name) for name in names], *[k.wake(name) for name in names],
                *[k.idle(name) for name in names], k.scheduled, k.expiring, k.paused,
                k.schedule_times, k.prefix]
        return keys, [k.owned_prefix(name) for name in names], len(lanes)

    def finish(self, job_id: str, worker_id: str, attempt: int, outcome: str, now: float,
               fields: Sequence[Any], bucket: str = "", runtime: float = 0.0,
               ttl: float | None = None) -> int:
        """Record one attempt's outcome: 1 recorded, 2 recorded as cancelled, 0 fenced off."""
        return int(self.finish_many(worker_id, [(job_id, attempt, outcome, fields, bucket,
                                                 runtime, now, False)], ttl)[0])

    def finish_many(self, worker_id: str,
                    outcomes: Sequence[tuple[str, int, str, Sequence[Any], str, float, float,
                                             bool]],
                    ttl: float | None = None, client: Any = None) -> Any:
        """Record several attempts' outcomes in one step, each (job id, attempt,
        outcome, fields, histogram bucket, run time, finish time, whether its record
        is small enough to read whole, SMALL_RECORD): a list of
        1 recorded / 2 recorded as cancelled / 0 fenced off (sent together, that
        list is its reply). A 'retry' outcome's fields hold its next_attempt_at.

        A field whose value is an ApartResult goes to the job's result key, and
        only if the attempt is recorded; the record keeps a nil and a marker."""
        k = self.keys
        args: list[Any] = [k.job_prefix, k.job_channel(""), worker_id,
                           int(ttl * 1000) if ttl else 0, k.history_prefix,
                           int(defaults.HISTORY_KEEP)]
        for job_id, attempt, outcome, fields, bucket, runtime, finished, small in outcomes:
            fields, key, data = self._apart(job_id, fields)
            args += [job_id, attempt, outcome, bucket, repr(runtime), repr(finished),
                     "1" if small else "", len(fields) // 2, *fields, key, data]
        return self._run(
            "finish",
            [k.processing(worker_id), k.running, k.dead, k.stats, k.owner_running,
             k.index_status("completed"), k.index_status("failed"), k.metrics,
             k.metric_functions, k.prefix, k.tally], args, client)

    def tally(self, client: Any = None) -> Any:
        """Add up what finishes counted (metrics.lua): run before reading the counters."""
        return self._run("tally", *self.tally_call(), client)

    def _apart(self, job_id: str, fields: Sequence[Any]) -> tuple[Sequence[Any], str, bytes]:
        """(the record's fields, the result key or '', the bytes kept there)."""
        for at in range(1, len(fields), 2):
            value = fields[at]
            if isinstance(value, ApartResult):
                kept = [*fields[:at], _NIL, *fields[at + 1:], STORED_RESULT, value.marker]
                return kept, self.keys.result(job_id), value.data
        return fields, "", b""

    def progress(self, job_id: str, worker_id: str, attempt: int, packed_value: bytes,
                 event: bytes) -> int:
        k = self.keys
        return self._run(
            "progress", [k.job(job_id)],
            [worker_id, attempt, packed_value, event, k.job_channel(job_id)])

    def requeue(self, job_id: str, worker_id: str, queue: str, max_retries: int, now: float,
                reason: str, priority: int = 0, owner: str | None = None) -> int:
        k = self.keys
        return self._run(
            "requeue",
            [k.job(job_id), k.processing(worker_id), k.running, self.lane(queue, priority, owner),
             k.dead, k.stats, k.wake(queue), k.owner_running, k.owners(queue),
             k.index_status("failed"), k.prefix, k.idle(queue)],
            [job_id, max_retries, repr(now), reason, k.job_channel(job_id)])

    def claim_dead(self, token: str, now: float, abandoned_before: float) -> list[str]:
        """Move every dead letter to `token`'s claim list (see claim_dead.lua); the ids."""
        k = self.keys
        ids = self._run("claim_dead", [k.dead, k.dead_claim(token), k.dead_claims],
                        [token, repr(now), repr(abandoned_before), k.dead_claim_prefix])
        return [i.decode() for i in ids]

    def requeue_dead(self, job_id: str, queue: str, priority: int = 0,
                     owner: str | None = None, dead: str | None = None) -> int:
        """Requeue one dead letter from `dead` (the dead list, or a claim list)."""
        k = self.keys
        return self._run(
            "requeue_dead",
            [dead or k.dead, k.job(job_id), self.lane(queue, priority, owner), k.stats, k.wake(queue),
             k.owners(queue), k.index_status("failed"), k.result(job_id), k.idle(queue)],
            [job_id, k.job_channel(job_id)])

    def purge_dead(self, job_id: str, queue: str, dead: str | None = None) -> int:
        k = self.keys
        return self._run(
            "purge_dead",
            [dead or k.dead, k.job(job_id), k.index_status("failed"), k.index_all, k.index_queue(queue),
             k.result(job_id)],
            [job_id])

    def leave_idle_lists(self, worker_id: str, queues: Sequence[str]) -> None:
        """Take a worker off every idle list (a post then hands it nothing more)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.idle_flag(worker_id))
        for queue in queues:
            pipe.zrem(self.keys.idle(queue), worker_id, "+" + worker_id)  # Keys.idle
        pipe.execute()

    def forget_worker(self, worker_id: str) -> int:
        k = self.keys
        return self._run(
            "forget_worker", [k.workers, k.heartbeat(worker_id), k.processing(worker_id)],
            [worker_id])

    def register(self, name: str, blob: bytes) -> int:
        k = self.keys
        return self._run(
            "register", [k.registry, k.registry_order, k.registry_seq, k.registry_times,
                         k.queues, k.idle_queues],
            [name, blob, k.registry_channel, repr(time.time()), k.registry_changed(""),
             k.idle("")])

    def unregister(self, name: str) -> int:
        k = self.keys
        return self._run(
            "unregister", [k.registry, k.registry_order, k.registry_seq, k.registry_times,
                           k.queues, k.idle_queues],
            [name, k.registry_channel, k.registry_changed(""), k.idle("")])

    def await_status(self, job_id: str) -> tuple[Any, dict[str, Any] | None]:
        """The job's status, marking it waited for (await.lua: its finish then sends
        the record), and its record if it has already ended and is small;
        JobNotFound for an unknown id."""
        reply = self._run("await", [self.keys.job(job_id)], [])
        if reply is None:
            raise JobNotFound(f"no job {job_id!r}")
        return first_look(reply)

    def position(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """position.lua's answer for the KEYS and ARGV position.py built, the ETA's
        run times added up first (tally), in the same round trip."""
        together = self.together()
        self.tally(client=together)
        self._run("position", keys, args, together)
        return together.send()[1]

    def cancel(self, job_id: str, queue: str, now: float, priority: int = 0,
               owner: str | None = None) -> int:
        """1 cancelled while waiting, 2 stop requested while running, 0 already ended."""
        return self._run("cancel", *self.cancel_call(job_id, queue, now, priority, owner))
