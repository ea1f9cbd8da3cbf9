"""One worker: takes a job, runs the listeners, records the outcome.

`step()` is one iteration with an injectable clock, so tests drive it without
threads; `run()` is the thin loop around it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

from . import defaults
from .batching import Batches
from .errors import REDIS_DOWN, InvalidMessage
from .hooks import WorkerHooks
from .job import COMPLETED, runtime_bucket
from .joblog import job_fields, log_outcome
from .lifecycle import RETRY, retried
from .listeners import Listener, listener_context, warn_once_without_secret
from .notebook import execute_call
from .reaper import Sweep
from .record import (CALL_FIELD, Outcome, handed_over, is_small, outcome_of, outcome_of_error,
                     record_from_hash)
from .serialization import pack
from .streams import Emitter
from .worker_link import WorkerLink

if TYPE_CHECKING:
    from .queue import MLQ

log = logging.getLogger("mlq.worker")


class _Outcome(NamedTuple):
    """A finished attempt whose outcome is not recorded yet."""
    record: dict[str, Any]
    outcome: str
    fields: list[Any]
    short: str | None
    runtime: float
    finished: float
    small: bool  # its record is small enough for the finish to read whole


class Worker:
    """Consumes jobs of one namespace under one worker id."""

    def __init__(self, mlq: MLQ, worker_id: str, *,
                 local_listeners: dict[str, Listener] | None = None,
                 queues: Sequence[str] | None = None,
                 hooks: WorkerHooks | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 fair: bool | None = None, max_running_per_owner: int | None = None) -> None:
        self.mlq = mlq
        self.worker_id = worker_id
        # shared, not copied: create_listener may add to it while we run
        self.local = local_listeners if local_listeners is not None else {}
        self.queues = tuple(queues or mlq.queues)
        self.hooks = hooks or WorkerHooks()
        self.fair = mlq.fair if fair is None else fair
        self.max_running_per_owner = (mlq.max_running_per_owner if max_running_per_owner is None
                                      else max_running_per_owner)
        self.clock = clock
        self.sleep = sleep
        self.batches = Batches(self)
        self.current: tuple[str, int, float, float | None] | None = None
        self._running: dict[str, Any] | None = None  # current's record, for its log lines
        self._loop: asyncio.AbstractEventLoop | None = None
        #: jobs already started for this worker by the take sent along with the
        #: last finish (one round trip per job while the queue is busy)
        self._prefetched: list[dict[str, Any]] = []
        #: outcomes not yet recorded: short jobs run back to back are recorded
        #: together (defaults.RECORD_WITHIN)
        self._pending: list[_Outcome] = []
        self._pending_since = 0.0
        self._small: set[str] = set()  # ids of the jobs taken whose records are small
        #: smoothed run time of recent jobs: how many to take at once follows
        self._typical_runtime: float | None = None
        self._found_nothing = False
        #: when the next scheduled job is due, as the last take that found nothing
        #: said: a blocking wait ends then (a take moves due jobs to their queues)
        self._block_until = 0.0
        #: on its queues' idle lists: a post may hand a started job to this worker
        self._idle = False
        self._listed_idle = False  # its queues are in Keys.idle_queues
        self._stop: threading.Event | None = None
        self._block = defaults.BLOCK_TIMEOUT  # the run loop's blocking wait
        self._sweep = Sweep(mlq, worker_id)
        self._link = WorkerLink(mlq.client)  # the run loop's finish and wait (worker_link.py)
        self._wait_on = [mlq.keys.inbox(worker_id), *(mlq.keys.wake(q) for q in self.queues)]
        warn_once_without_secret(mlq.secret, mlq.clients.main)

    # -- the loop -----------------------------------------------------------
    def run(self, stop: threading.Event, block: float = defaults.BLOCK_TIMEOUT) -> None:
        """Step until `stop` is set; a lost Redis makes it wait and reconnect."""
        pause, cap = defaults.RECONNECT_BACKOFF
        delay = pause
        self._stop = stop
        self._block = block
        try:
            # jobs taken ahead are already started here: run them even when stopping
            while not stop.is_set() or self._prefetched or self._pending:
                try:
                    self.step(block)
                    self.sweep()
                    delay = pause
                except REDIS_DOWN as exc:
                    log.warning("worker %s: Redis unavailable (%s); retrying in %.1f s",
                                self.worker_id, exc, delay)
                    stop.wait(delay)
                    delay = min(delay * 2, cap)
            self._link.close()  # ends a BLPOP sent with the last finish: strays are taken next
            self._leave_idle()
        finally:
            self._link.close()
            if self._loop is not None:
                self._loop.close()

    def sweep(self) -> bool:
        """Sweep for the namespace when it is this worker's turn (reaper.Sweep)."""
        return self._sweep(self.clock())

    def step(self, block: float = 0.0) -> bool:
        """Take a job, or a batch for a batching listener (waiting up to `block`
        seconds), and run it; False if none came."""
        if self._pending and not self._prefetched:
            self._record_pending(take_next=False)
        records, self._prefetched = self._prefetched, []
        if not records:
            size = self.batches.settings()[0]
            records = self.take(block, size if size > 1 else self._take_count()) or []
        if not records:
            return False
        # settings again: the take may have loaded a new registry
        size, wait = self.batches.settings()
        if size > 1 and wait > 0 and len(records) < size:
            records += self.batches.fill(size - len(records), wait)
        singles = self.batches.run(records) if size > 1 else records
        for index, record in enumerate(singles):
            self.run_job(record, last=index == len(singles) - 1)
        return True

    def _take_count(self) -> int:
        """How many jobs to take at once: one, unless jobs have been finishing in
        a fraction of RECORD_WITHIN (only in the run loop, so step() stays one job)."""
        typical = self._typical_runtime
        if self._stop is None or typical is None:
            return 1
        return max(1, min(defaults.TAKE_AT_MOST, int(defaults.RECORD_WITHIN / max(typical, 1e-5))))

    def take(self, block: float, count: int = 1,
             holding: bool = False) -> list[dict[str, Any]] | None:
        """Start up to `count` jobs; with nothing queued, block up to `block` seconds.
        `holding`: this worker holds jobs (filling a batch), so it has no strays."""
        # a take sent with the last finish just found nothing: go straight to
        # blocking (a job posted since then has left a wake token, or was handed over)
        if self._found_nothing and block > 0:
            answer = None
        else:
            idle_for = 0.0 if holding else self._idle_claim(block)
            answer = self._take_now(count, holding, idle_for=idle_for)
        self._found_nothing = False
        if answer:
            return self._decode(answer)
        if block <= 0:
            return None
        # no longer than until the next scheduled job is due: a take moves it
        block = min(block, max(self._block_until - self.clock(), 0.001))
        # Nothing queued: block (no polling) until a post hands a started job to
        # this worker's inbox (it waits as idle), or pushes a wake token; then take
        # in one atomic step. The token is only a hint: the job itself moves from
        # its queue straight into our processing list, so a crash at any instant
        # loses nothing.
        popped = self._link.wait() if self._link.waiting else \
            self.mlq.client.blpop(self._wait_on, block)  # else sent with the last finish
        if popped is None:
            return None
        if popped[0].decode() == self._wait_on[0]:  # the inbox
            self._idle = False  # the post took this worker off the idle list
            record = handed_over(popped[1])[1]
            # its listeners were current when it began to wait (registry.lua)
            if record is not None:
                self._small.add(record["id"])  # a large one is not handed over
                return [record]
            # a large record: it waits in our processing list, the take hands it over
        answer = self._take_now(count, holding)
        return self._decode(answer) if answer else None

    def _idle_claim(self, block: float) -> float:
        """How long a wait as idle is claimed: two blocking waits. The claim is
        renewed by the take after each wait, so only a worker that is gone (or
        stuck) lets it lapse, and posts then pass it over."""
        return max(2 * block, defaults.MIN_IDLE_CLAIM) if block > 0 else 0.0

    def _take_now(self, count: int, holding: bool, client: Any = None,
                  idle_for: float = 0.0, strays_only: bool = False) -> Any:
        """The take step; `idle_for`: when nothing is there, wait as idle for up to
        that many seconds (a post may then hand its job straight to this worker)."""
        was_idle = self._idle
        if idle_for and not self._listed_idle:  # a registry change finds it (registry.lua)
            self.mlq.client.sadd(self.mlq.keys.idle_queues, *self.queues)
            self._listed_idle = True
        # until an answer says otherwise: a reply lost on the wire may have left
        # this worker on the idle lists, and the next take must clear them
        self._idle = was_idle or idle_for > 0
        now = self.clock()
        answer = self.mlq.scripts.take(self.queues, self.worker_id, now, count=count,
                                       fair=self.fair,
                                       max_running_per_owner=self.max_running_per_owner,
                                       strays=not holding, client=client,
                                       was_idle=was_idle, idle_for=idle_for,
                                       strays_only=strays_only,
                                       registry_seq=self.mlq.registry.loaded_seq)
        if client is None:
            answer = self._started_any(answer, now)
            self._idle = idle_for > 0 and not answer
        return answer

    def _started_any(self, answer: Any, now: float) -> Any:
        """The take's answer when it started jobs, else None, noting when the next
        scheduled job is due (a take's answer when it started none)."""
        if not answer or isinstance(answer, bytes):
            self._block_until = float(answer) if answer else now + 3600.0
            return None
        return answer

    def _leave_idle(self) -> None:  # a stopping worker runs what was handed to it
        if not self._idle:
            return
        try:
            answer = self._take_now(defaults.TAKE_AT_MOST, holding=False, strays_only=True)
        except REDIS_DOWN:
            return  # anything handed over stays in our processing list for the reaper
        for record in self._decode(answer) if answer else []:
            self.run_job(record)

    def _decode(self, answer: list[Any]) -> list[dict[str, Any]]:
        self.mlq.registry.refresh(answer[0].decode())
        records = [record_from_hash(flat) for flat in answer[1:]]
        self._small.update(r["id"] for r, flat in zip(records, answer[1:]) if is_small(flat))
        return records

    # -- one job ------------------------------------------------------------
    def run_job(self, record: dict[str, Any], last: bool = True) -> None:
        """Run one started job; `last`: no other job is waiting in this worker, so
        its outcome is recorded at once (along with taking the next)."""
        job_id, attempt = record["id"], record["attempt"]
        if self._pending and record["timeout"]:
            # a job with a time limit may be killed: record the others first
            self._record_pending(take_next=False)
        started = self.clock()
        self.current, self._running = (job_id, attempt, started, record["timeout"]), record
        self.hooks.job_started(self.worker_id, job_id, attempt, record["timeout"])
        if log.isEnabledFor(logging.INFO):
            log.info("job %s started on %s (attempt %s)", job_id, self.worker_id, attempt,
                     extra=self.log_fields(job_id, attempt, "started", 0.0))
        try:
            outcome, fields, short = self._execute(record)
            self.finish(record, outcome, fields, short, started, last)
        finally:
            self.current = self._running = None
            self.hooks.job_ended(self.worker_id, job_id)

    def _execute(self, record: dict[str, Any]) -> Outcome:
        if record.get(CALL_FIELD):
            return execute_call(self, record)
        emitter = Emitter(self.mlq, record["id"])  # streamed chunks (streams.py)
        try:
            listeners = self.mlq.registry.resolve(record["functions"], self.local)
            value, context = None, {**self.context(record), "emit": emitter.emit}
            for name, function in listeners:
                context["state"] = self.mlq.listener_states.state_for(name, function)
                value = emitter.collect(self.call(function, record["msg"], context),
                                        self.run_awaitable)
            outcome = outcome_of(value, self.mlq.max_result_size)
        except Exception as exc:
            outcome = retried(record, exc, self.clock()) or outcome_of_error(exc)
        return outcome

    def run_awaitable(self, awaitable: Any) -> Any:
        """Run a coroutine a listener returned, on this worker's own event loop."""
        self._loop = self._loop or asyncio.new_event_loop()
        return self._loop.run_until_complete(awaitable)

    def context(self, record: dict[str, Any]) -> dict[str, Any]:
        """args[0] of a listener running `record`'s attempt (listeners.py)."""
        job_id, attempt = record["id"], record["attempt"]
        return listener_context(self.mlq, record,
                                lambda value: self.update_progress(job_id, attempt, value))

    def call(self, function: Listener, msg: Any, context: dict[str, Any]) -> Any:
        """Call a listener, running it to the end when it is a coroutine function."""
        value = function(msg, context)
        if inspect.isawaitable(value):
            value = self.run_awaitable(value)
        return value

    def finish(self, record: dict[str, Any], outcome: str, fields: list[Any],
               short: str | None, started: float, last: bool = True) -> None:
        """Note an attempt's outcome; recorded at once when `last`, else with the
        outcomes of the next jobs (RECORD_WITHIN)."""
        now = self.clock()
        runtime = max(now - started, 0.0)
        typical = self._typical_runtime
        self._typical_runtime = runtime if typical is None else 0.8 * typical + 0.2 * runtime
        if not self._pending:
            self._pending_since = now
        small = record["id"] in self._small
        self._small.discard(record["id"])  # it may run again, taken anew
        self._pending.append(_Outcome(record, outcome, fields, short, runtime, now, small))
        if last or now - self._pending_since >= defaults.RECORD_WITHIN:
            self._record_pending(take_next=last and self._may_take_ahead())

    def _record_pending(self, take_next: bool) -> None:
        """Record the held outcomes in one step; with `take_next`, start the next
        jobs in the same round trip."""
        pending, self._pending = self._pending, []
        outcomes = [(o.record["id"], o.record["attempt"], o.outcome, o.fields,
                     runtime_bucket(o.runtime), o.runtime, o.finished, o.small) for o in pending]
        answers = self._record_and_take_next(outcomes) if take_next else None
        pause, cap = defaults.RECONNECT_BACKOFF
        while answers is None:
            try:
                answers = self.mlq.scripts.finish_many(self.worker_id, outcomes,
                                                       self.mlq.result_ttl)
            except REDIS_DOWN as exc:
                # the outcomes are only in this variable: keep trying, the jobs are not
                # lost either way (they stay in our processing list for the reaper)
                log.warning("jobs %s: cannot record outcomes yet (%s)",
                            ",".join(o.record["id"] for o in pending), exc)
                self.sleep(pause)
                pause = min(pause * 2, cap)
        for done, o in zip(answers, pending):
            self._report(o, int(done))

    def _report(self, o: _Outcome, done: int) -> None:
        """Log a recorded outcome (done: 1, 2 cancelled, 0 fenced off) and send its
        callback: only a job that ended completed or failed has one."""
        job_id, attempt = o.record["id"], o.record["attempt"]
        if done == 2:
            log.info("job %s cancelled on %s", job_id, self.worker_id,
                     extra=job_fields(o.record, "cancelled", o.runtime, self.worker_id))
            return
        if not done:
            log.warning("job %s attempt %s finished late on %s; outcome dropped",
                        job_id, attempt, self.worker_id,
                        extra=job_fields(o.record, "fenced", o.runtime, self.worker_id))
            return
        log_outcome(o.record, o.outcome, o.fields, o.runtime, o.finished, self.worker_id)
        if o.record["callback"] and o.outcome != RETRY:
            self.mlq.callbacks.send(o.record["callback"], o.outcome == COMPLETED, job_id, o.short)

    def _may_take_ahead(self) -> bool:
        return (self._stop is not None and not self._stop.is_set() and not self._prefetched
                and self.batches.settings()[0] == 1)

    def _record_and_take_next(self, outcomes: list[tuple[Any, ...]]) -> list[Any] | None:
        """Record outcomes and start the next jobs in one round trip.
        None when the connection failed: the caller then records the outcomes
        alone (finish is safe to repeat, and a take that did run is handed over
        again by the next take)."""
        together = self.mlq.scripts.together()
        self.mlq.scripts.finish_many(self.worker_id, outcomes, self.mlq.result_ttl,
                                     client=together)
        self._take_now(self._take_count(), holding=False, client=together,
                       idle_for=self._idle_claim(self._block))
        # the wait that follows goes with them; the take ends it at once when there is
        # work, or a scheduled job due sooner (worker_link.py)
        then_wait = None if self._link.waiting else (self._link, self._wait_on, self._block)
        try:
            answers, taken = together.send(then_wait)
        except REDIS_DOWN:
            return None
        taken = self._started_any(taken, self.clock())
        if taken:
            self._prefetched = self._decode(taken)
            self._idle = False
        else:
            self._found_nothing = True
        return answers

    def log_fields(self, job_id: str, attempt: int, event: str, duration: float) -> dict[str, Any]:
        """Fields a structured (JSON) log line carries for a job event (joblog.py)."""
        running = self._running if self._running and self._running["id"] == job_id else {}
        return job_fields({**running, "id": job_id, "attempt": attempt}, event, duration,
                          self.worker_id)

    # -- listener helpers ---------------------------------------------------
    def update_progress(self, job_id: str, attempt: int, value: Any) -> bool:
        try:
            packed, event_value = pack(value), value
        except InvalidMessage:
            packed, event_value = pack(str(value)), str(value)
        event = pack([job_id, "started", event_value])
        return bool(self.mlq.scripts.progress(job_id, self.worker_id, attempt, packed, event))
