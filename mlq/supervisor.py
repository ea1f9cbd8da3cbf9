"""Supervised workers: one process that runs N spawned children and watches them.

The supervisor heartbeats for each child (so a listener holding the GIL for
minutes does not look dead), kills a child whose job passes its time limit,
and when a child dies for any reason takes its job back at once: requeued with
retries + 1, or failed past the retry limit, with the reason recorded. Children
are started with spawn, never fork, so CUDA and threads are safe in them.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.connection import wait
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Sequence

from . import defaults, joblog
from .heartbeat import beat, capacity, new_worker_id, retire
from .job import signal_reason, time_limit_reason
from .errors import REDIS_DOWN
from .keys import DEFAULT_QUEUE
from .queue import MLQ
from .children import OOM_KILLED, Child, ChildConfig, child_main, import_listener, oom_kill_count

log = logging.getLogger("mlq.supervisor")

#: A child that dies this soon after starting is restarted after a growing pause,
#: so a listener module that fails to import does not spin the CPU.
QUICK_DEATH = 2.0
RESTART_BACKOFF_CAP = 10.0


@dataclass
class SupervisorSettings:
    """How a supervisor runs its children. `mlq_options` are MLQ keyword options
    (limits, callback policy) for every child. A job whose child the kernel's OOM
    killer ended is failed with error_kind 'oom' unless `oom_retries` allows
    another attempt. `grace_period`: after a stop is requested, running jobs get
    this many seconds to finish; then the children are stopped and their jobs put
    back (None: no limit). `cancel_grace`: a child still running a cancelled job
    this many seconds after the cancel is killed (the job ends cancelled)."""

    concurrency: int = 1
    imports: Sequence[str] = ()
    secret: str | None = None
    heartbeat_interval: float = defaults.HEARTBEAT_INTERVAL
    heartbeat_timeout: float = defaults.HEARTBEAT_TIMEOUT
    max_retries: int = defaults.MAX_RETRIES
    queues: Sequence[str] = (DEFAULT_QUEUE,)
    gpus: Sequence[str] | None = None
    oom_retries: int = 0
    fair: bool = False
    max_running_per_owner: int = 0
    log_setup: Callable[[int], None] | None = None
    grace_period: float | None = None
    cancel_grace: float = 10.0
    mlq_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, **keywords: Any) -> SupervisorSettings:
        """Settings from keywords; those that are no setting here are MLQ options."""
        names = {f.name for f in fields(cls)} - {"mlq_options"}
        mine = {k: v for k, v in keywords.items() if k in names}
        return cls(**mine, mlq_options={k: v for k, v in keywords.items() if k not in names})

    def check(self) -> list[str]:
        """Fail here, with a clear message, not in every child; the imported names."""
        if self.gpus:
            self.concurrency = len(self.gpus)
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        return [import_listener(spec)[0] for spec in self.imports]


class Supervisor:
    def __init__(self, namespace: str, redis_url: str,
                 settings: SupervisorSettings | None = None, **keywords: Any) -> None:
        """Run `settings.concurrency` children, or one per GPU id in `settings.gpus`
        (each sees only its GPU). Keywords stand for the settings' fields."""
        settings = settings or SupervisorSettings.of(**keywords)
        self.imported = settings.check()
        self.registered: list[str] = []  # read with each beat, reported by the next
        self.settings = settings
        self.namespace = namespace
        self.redis_url = redis_url
        self.gpus = [str(g) for g in settings.gpus] if settings.gpus else None
        self._oom_kills_seen = oom_kill_count()
        #: what every child's MLQ gets
        self.mlq_options = dict(settings.mlq_options, fair=settings.fair,
                                max_running_per_owner=settings.max_running_per_owner)
        self.mlq = MLQ(namespace, redis_url=redis_url, secret=settings.secret,
                       heartbeat_timeout=settings.heartbeat_timeout, **settings.mlq_options)
        self.supervisor_id = new_worker_id("s")
        self.children: list[Child] = []
        self._context = multiprocessing.get_context("spawn")
        self._stop_level = 0  # 0 running, 1 finish running jobs, 2 stop now
        self._stop_sent = False
        self._cancels: dict[str, tuple[str, float]] = {}  # worker -> (job, kill time)
        self._grace_ends: float | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._orphans: list[tuple[str, str]] = []  # (worker id, reason) still to recover
        self._restart_at: list[tuple[float, str | None]] = []  # (when, GPU id)
        self._quick_deaths = 0
        self._next_beat = 0.0
        self._beats_stop = threading.Event()
        self._beat_due = threading.Event()  # set: beat now (a new child) or stop
        self._beats: threading.Thread | None = None
        self._serial = 0

    # -- control ------------------------------------------------------------
    def request_stop(self, immediate: bool = False) -> None:
        """First call: finish running jobs and stop. immediate=True: kill children
        now. Safe from a signal handler: it only sets a level and writes one byte."""
        self._stop_level = max(self._stop_level, 2 if immediate else 1)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    # -- main loop ------------------------------------------------------------
    def run(self) -> None:
        """Run the children until a stop is requested and they have all ended."""
        self.start()
        try:
            while self.running():
                self.step()
        finally:
            self.finish()

    def start(self) -> None:
        """Start the children, and the threads that heartbeat for them and take the
        reaper's orders; then step() until running() is False, and finish()."""
        log.info("supervisor %s: %d worker process(es) for namespace %r",
                 self.supervisor_id, self.settings.concurrency, self.namespace)
        threading.Thread(target=self._control_loop, name="mlq-control", daemon=True).start()
        self._beats = threading.Thread(target=self._heartbeat_loop, name="mlq-heartbeat",
                                       daemon=True)
        for slot in range(self.settings.concurrency):
            self._spawn(self.gpus[slot] if self.gpus else None)
        self._beats.start()

    def running(self) -> bool:  # children left, or some to restart
        return bool(self.children or (self._stop_level == 0 and self._restart_at))

    def finish(self) -> None:
        """After the last step: stop heartbeating, recover what could not be yet."""
        self._beats_stop.set()
        self._beat_due.set()
        if self._beats is not None:
            self._beats.join(5)
        self._retry_orphans()
        self.mlq.callbacks.close(wait=True)
        os.close(self._wake_r)
        os.close(self._wake_w)
        log.info("supervisor %s stopped", self.supervisor_id)

    def step(self, now: float | None = None, block: bool = True) -> None:
        """One pass: act on a stop request, restart children that are due, enforce
        time limits, then wait for a child's message or exit (at most until the next
        deadline; not at all unless `block`) and act on it. `now`: the time to act
        on, so that tests drive deadlines without waiting for them."""
        now = time.time() if now is None else now
        if self._stop_level >= 2:
            for child in self.children:
                if child.process.is_alive():
                    child.process.kill()
        elif self._stop_level == 1 and not self._stop_sent:
            self._stop_sent = True
            if self.settings.grace_period is not None:
                self._grace_ends = now + self.settings.grace_period
            for child in self.children:
                self._send(child, "stop")
        elif self._grace_ends is not None and now >= self._grace_ends:
            log.warning("supervisor %s: grace period of %g s over: stopping running jobs "
                        "and putting them back", self.supervisor_id, self.settings.grace_period)
            self._stop_level = 2
            return  # the next pass kills the children
        if self._stop_level == 0:
            due = [entry for entry in self._restart_at if entry[0] <= now]
            for t, gpu in due:
                self._restart_at.remove((t, gpu))
                self._spawn(gpu)
        if now >= self._next_beat:
            self._retry_orphans()
            self._next_beat = now + self.settings.heartbeat_interval
        self._enforce_time_limits(now)
        self._enforce_cancels(now)
        ready = wait([c.conn for c in self.children] + [c.process.sentinel for c in self.children]
                     + [self._wake_r], timeout=self._wait_time(now) if block else 0)
        for item in ready:
            if item == self._wake_r:
                os.read(self._wake_r, 1024)
        for child in list(self.children):
            if child.conn in ready:
                self._read_messages(child)
            if child.process.sentinel in ready or not child.process.is_alive():
                self._reap_child(child)

    def _wait_time(self, now: float) -> float:
        deadlines = [self._next_beat] + [when for when, _ in self._restart_at]
        deadlines += [c.job[2] + c.job[3] for c in self.children if c.job and c.job[3]]
        if self._grace_ends is not None:
            deadlines.append(self._grace_ends)
        deadlines += [deadline for _, deadline in list(self._cancels.values())]
        return max(min(deadlines) - now, 0.0)

    def _enforce_cancels(self, now: float) -> None:
        """Kill a child still running a job cancelled `cancel_grace` seconds ago."""
        for worker_id, (job_id, _) in [c for c in list(self._cancels.items()) if c[1][1] <= now]:
            del self._cancels[worker_id]
            record = self.mlq.get_job(job_id, fields=["status", "worker"])
            running = record["status"] == "started" and record["worker"] == worker_id
            for child in [c for c in self.children if c.worker_id == worker_id and running]:
                log.warning("job %s: cancelled %g s ago and still running: stopping worker %s",
                            job_id, self.settings.cancel_grace, worker_id)
                child.process.kill()

    # -- children -------------------------------------------------------------
    def _spawn(self, gpu: str | None = None) -> None:
        self._serial += 1
        worker_id = f"{self.supervisor_id}-c{self._serial}"
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        settings = self.settings
        config = ChildConfig(self.namespace, self.redis_url, worker_id, tuple(settings.imports),
                             settings.secret, tuple(settings.queues),
                             logging.getLogger().getEffectiveLevel(),
                             self.mlq_options, gpu, self.settings.log_setup)
        process = self._context.Process(target=child_main, args=(config, child_conn),
                                        name=f"mlq-worker-{self._serial}", daemon=False)
        process.start()
        child_conn.close()
        child = Child(worker_id, process, parent_conn, time.time(), gpu=gpu)
        self.children.append(child)
        log.info("worker %s started (pid %s)", worker_id, process.pid)
        self._beat_due.set()  # announce it at once

    def _send(self, child: Child, message: Any) -> None:
        with contextlib.suppress(OSError, ValueError):  # it died; its sentinel tells us
            child.conn.send(message)

    def _read_messages(self, child: Child) -> None:
        try:
            while child.conn.poll():
                message = child.conn.recv()
                if message[0] == "start":
                    _, job_id, attempt, timeout, started = message
                    child.job = (job_id, attempt, started, timeout)
                    child.took_a_job = True
                elif message[0] == "end":
                    child.job = None
                elif message[0] == "fitted":
                    child.batch_fitted = message[1]
        except (EOFError, OSError):
            pass

    def _enforce_time_limits(self, now: float) -> None:
        for child in self.children:
            job = child.job
            if job and job[3] and now - job[2] > job[3] and child.kill_reason is None:
                child.kill_reason = (time_limit_reason(job[3]), job[0], job[1])
                log.warning("job %s: %s; killing worker %s", job[0], child.kill_reason[0], child.worker_id,
                            extra=joblog.stored_fields(self.mlq, job[0], "killed", child.worker_id, now))
                child.process.kill()

    def _reap_child(self, child: Child) -> None:
        child.process.join()
        self._read_messages(child)
        self.children.remove(child)
        child.conn.close()
        code = child.process.exitcode
        reason = signal_reason(code if code is not None else -9)
        if child.kill_reason is not None:
            reason = child.kill_reason[0]
        elif code == -signal.SIGKILL:
            oom_kills = oom_kill_count()
            if oom_kills is not None and self._oom_kills_seen is not None \
                    and oom_kills > self._oom_kills_seen:
                reason = OOM_KILLED
            self._oom_kills_seen = oom_kills
        if reason == OOM_KILLED:
            self._apply_oom_policy(child, reason)
        if code != 0 or child.kill_reason is not None:
            log.warning("worker %s ended: %s", child.worker_id, reason)
        self._recover(child.worker_id, reason, child.kill_reason, child.error_kind)
        if self._stop_level == 0:
            self._schedule_restart(child)

    def _apply_oom_policy(self, child: Child, reason: str) -> None:
        """Fail an OOM-killed job unless oom_retries allows another go: a blind retry
        of a job that does not fit in memory would only kill the next child too."""
        try:
            held = self.mlq.client.lrange(self.mlq.keys.processing(child.worker_id), 0, -1)
            if not held:
                return
            record = self.mlq.get_job(held[-1].decode())  # the oldest: the one it ran
        except (*REDIS_DOWN, KeyError):
            return  # recovery requeues it as usual
        if record["worker"] != child.worker_id or record["status"] != "started":
            return
        job_id, attempt, retries = record["id"], record["attempt"], record["retries"]
        if retries >= self.settings.oom_retries:
            child.kill_reason = (reason, job_id, attempt)
            child.error_kind = "oom"

    def _schedule_restart(self, child: Child) -> None:
        quick = time.time() - child.started < QUICK_DEATH and not child.took_a_job
        self._quick_deaths = self._quick_deaths + 1 if quick else 0
        delay = min(0.25 * 2 ** self._quick_deaths, RESTART_BACKOFF_CAP) if quick else 0.0
        self._restart_at.append((time.time() + delay, child.gpu))

    def _recover(self, worker_id: str, reason: str,
                 kill_reason: tuple[str, str, int] | None = None,
                 error_kind: str | None = None) -> None:
        try:
            if kill_reason is not None:
                self.mlq.fail_job(kill_reason[1], worker_id, kill_reason[2], kill_reason[0],
                                  error_kind=error_kind)
            keys = self.mlq.keys
            # heartbeat first: from then on no post hands this worker a job
            retire(self.mlq.client, keys, [worker_id])
            self.mlq.recovery.recover_worker(worker_id, self.settings.max_retries, time.time(), reason)
            retire(self.mlq.client, keys, [worker_id])
        except REDIS_DOWN as exc:
            log.warning("cannot recover jobs of %s yet: %s", worker_id, exc)
            self._orphans.append((worker_id, reason))

    def _retry_orphans(self) -> None:
        orphans, self._orphans = self._orphans, []
        for worker_id, reason in orphans:
            self._recover(worker_id, reason)

    def _heartbeat_loop(self) -> None:
        """Heartbeats, on a thread and connections of their own: the main loop may
        wait on Redis (recovering a child's jobs), and a heartbeat must not wait
        behind it, or live workers would pass for dead."""
        while not self._beats_stop.is_set():
            wait = self.settings.heartbeat_interval if self._heartbeat() else defaults.HEARTBEAT_RETRY
            self._beat_due.wait(wait)
            self._beat_due.clear()

    def _heartbeat(self) -> bool:
        """Refresh the children's heartbeats; False when Redis could not be reached."""
        shared = {**capacity(self.settings.queues, self.imported, self.registered,
                             self.settings.concurrency), "host": socket.gethostname()}
        workers = {  # each child sees only its own GPU
            c.worker_id: {**shared, "pid": c.process.pid, "supervisor": os.getpid(),
                          "kind": "process", "started": c.started,
                          "gpus": [] if c.gpu is None else [c.gpu], "batch_fitted": c.batch_fitted,
                          "job": c.job[0] if c.job else None}
            for c in list(self.children) if c.process.is_alive()
        }
        if not workers:
            return True
        try:
            self.registered = beat(self.mlq.heartbeat_client, self.mlq.keys, workers,
                                   self.settings.heartbeat_timeout, read_registered=True)
        except REDIS_DOWN as exc:
            log.warning("heartbeat failed: %s", exc)
            return False
        return True

    # -- orders from the reaper -----------------------------------------------
    def _control_loop(self) -> None:
        """Kill a child when the reaper says its job ran past job_timeout."""
        pattern = self.mlq.keys.control_pattern(f"{self.supervisor_id}-c")
        while self._stop_level < 2:
            try:
                pubsub = self.mlq.client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(pattern)
                while self._stop_level < 2:
                    message = pubsub.get_message(timeout=1.0)
                    if message:
                        self._on_control(message["channel"].decode(), message["data"].decode())
            except REDIS_DOWN:
                time.sleep(1.0)

    def _on_control(self, channel: str, order: str) -> None:
        verb, _, job_id = order.partition(" ")
        if verb == "cancel":  # the step loop sets its wait by the deadline: wake it
            worker_id = channel[len(self.mlq.keys.control_channel("")):]
            self._cancels[worker_id] = (job_id, time.time() + self.settings.cancel_grace)
            os.write(self._wake_w, b"c")
        if verb != "stop":
            return
        for child in list(self.children):
            # the order names the child by its channel; a child tracks only jobs
            # with a time limit, so any other job it holds is the one meant
            if channel.endswith(child.worker_id) and (child.job is None or child.job[0] == job_id):
                log.warning("job %s: stopping worker %s at the reaper's request",
                            job_id, child.worker_id)
                child.process.kill()

