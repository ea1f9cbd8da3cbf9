"""The reaper (SPEC §6): recovers jobs of dead workers and jobs past job_timeout.

Safe to run in several processes at once: every recovery claims the id out of
the worker's processing list in one atomic step, so only one of them acts.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from . import defaults
from .errors import REDIS_DOWN
from .record import handed_over
from .recovery import Recovered
from .serialization import unpack

if TYPE_CHECKING:
    from .queue import MLQ

log = logging.getLogger("mlq.reaper")


#: What one sweep took back.
ReapReport = Recovered


class Reaper:
    def __init__(self, mlq: MLQ, *, job_timeout: float = defaults.REAPER_JOB_TIMEOUT,
                 max_retries: int = defaults.MAX_RETRIES,
                 heartbeat_timeout: float | None = None) -> None:
        """`heartbeat_timeout`: a worker silent this long is dead even if its heartbeat
        key (whose TTL the worker set) has not expired yet; None trusts the TTL."""
        self.mlq = mlq
        self.heartbeat_timeout = heartbeat_timeout
        self.job_timeout = job_timeout
        self.max_retries = max_retries

    def reap_once(self, now: float | None = None) -> ReapReport:
        """One sweep at time `now`: dead workers' jobs first, then stalled ones."""
        now = time.time() if now is None else now
        report = self.recover_dead_workers(now)
        client, keys = self.mlq.client, self.mlq.keys
        for raw_id in client.zrangebyscore(keys.running, "-inf", now - self.job_timeout):
            job_id = raw_id.decode()
            worker_raw = client.hget(keys.job(job_id), "worker")
            worker_id = unpack(worker_raw) if worker_raw else None
            if not worker_id:
                client.zrem(keys.running, job_id)  # finished meanwhile or record gone
                continue
            # stop it where it runs first, so one attempt runs at a time
            client.publish(keys.control_channel(worker_id), f"stop {job_id}")
            self._recover(job_id, worker_id, now,
                          f"running longer than {self.job_timeout:g} s", report)
        return report

    def recover_dead_workers(self, now: float) -> ReapReport:
        """Take back the jobs of workers that are gone: those that did not take a job
        a post handed them while idle (HAND_OVER_WINDOW), and those whose heartbeat
        expired. What every live worker runs in its loop (see Worker.sweep)."""
        report = ReapReport()
        client, keys = self.mlq.client, self.mlq.keys
        worker_ids = [w.decode() for w in client.smembers(keys.workers)]
        pipe = client.pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.get(keys.heartbeat(worker_id))
            pipe.lindex(keys.inbox(worker_id), -1)  # the oldest note: seconds, usually none
        found = pipe.execute() if worker_ids else []
        for worker_id, beat, note in zip(worker_ids, found[0::2], found[1::2]):
            if not self._alive(beat, now):
                self._recover_all(worker_id, now, f"worker {worker_id} stopped heartbeating",
                                  report)
                self.mlq.scripts.forget_worker(worker_id)
            elif note and handed_over(note)[0] < now - defaults.HAND_OVER_WINDOW \
                    and self._claim_inbox(worker_id, note):
                self.mlq.scripts.leave_idle_lists(worker_id, self.mlq.queue_names())
                self._recover_all(worker_id, now, f"worker {worker_id} did not take the job "
                                  "handed to it while idle", report)
        return report

    def _claim_inbox(self, worker_id: str, note: bytes) -> bool:
        """Empty the inbox of a worker that left `note` there too long, unless it
        took the note meanwhile (then it is alive) or another sweep claimed it."""
        inbox = self.mlq.keys.inbox(worker_id)

        def claim(pipe: Any) -> bool:
            if pipe.lindex(inbox, -1) != note:
                return False
            pipe.multi()
            pipe.delete(inbox)
            return True

        # a change to the inbox meanwhile makes it look again (redis-py's transaction)
        return bool(self.mlq.client.transaction(claim, inbox, value_from_callable=True))

    def _recover_all(self, worker_id: str, now: float, reason: str, report: ReapReport) -> None:
        done = self.mlq.recovery.recover_worker(worker_id, self.max_retries, now, reason)
        report.requeued += done.requeued
        report.failed += done.failed

    def _alive(self, beat: bytes | None, now: float) -> bool:
        """A heartbeat key that has not expired, and (when this reaper has a
        heartbeat_timeout of its own) was refreshed within it."""
        if beat is None:
            return False
        if self.heartbeat_timeout is None:
            return True
        info = unpack(beat)
        last = info.get("beat") if isinstance(info, dict) else None
        return last is None or now - float(last) <= self.heartbeat_timeout

    def _recover(self, job_id: str, worker_id: str, now: float, reason: str,
                 report: ReapReport) -> None:
        report.note(job_id, self.mlq.recover_job(job_id, worker_id, self.max_retries, now,
                                                 reason))

    def run(self, stop: threading.Event, interval: float = defaults.REAPER_INTERVAL) -> None:
        """Sweep every `interval` seconds until `stop` is set; survives Redis outages."""
        while not stop.is_set():
            try:
                self.reap_once()
            except Exception as exc:  # a sweep that failed is simply tried again
                log.warning("reaper sweep failed: %s", exc)
            stop.wait(interval)


class Sweep:
    """What each worker does between jobs, one worker of the namespace at a time (a
    lock) and every SWEEP_INTERVAL: take back the jobs of workers that are gone
    (Reaper.recover_dead_workers), so no job waits on a dead worker with or without
    a reaper running, post the periodic jobs that are due (schedules.py), and write
    the counters and indexes that posts and finishes left for later (tally.lua)."""

    def __init__(self, mlq: MLQ, worker_id: str) -> None:
        self.mlq = mlq
        self.worker_id = worker_id
        self.reaper = Reaper(mlq, max_retries=mlq.max_retries,
                             heartbeat_timeout=mlq.heartbeat_timeout)
        self.next_at = 0.0

    def __call__(self, now: float) -> bool:
        """True when this worker swept."""
        if now < self.next_at:
            return False
        self.next_at = now + defaults.SWEEP_INTERVAL
        if not self.mlq.client.set(self.mlq.keys.sweep_lock, self.worker_id, nx=True,
                                   px=int(defaults.SWEEP_INTERVAL * 1000)):
            return False
        try:
            self.reaper.recover_dead_workers(now)
            self.mlq.schedules_store.fire_due(now)
            # what posts and finishes left for later, written off their round trips
            self.mlq.scripts.tally()
        except REDIS_DOWN:
            raise
        except Exception:  # a sweep that fails is tried again; it must not stop the worker
            log.exception("worker %s: sweep failed", self.worker_id)
        return True
