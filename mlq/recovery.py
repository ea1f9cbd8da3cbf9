"""Taking jobs back: from a worker that died or ran out of time, an attempt failed
from outside it (time limit, OOM), and the dead letters requeued or purged.

The supervisor, the reaper and every worker's sweep all recover through here,
each with the same fenced, claim-once steps, so a job is taken back once
however many of them notice at the same moment.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from . import defaults
from .errors import JobNotFound
from .job import FAILED
from .joblog import stored_fields
from .keys import DEFAULT_QUEUE
from .record import failed
from .serialization import unpack

if TYPE_CHECKING:
    from .queue import MLQ

log = logging.getLogger("mlq.recovery")

#: recover_job's answers
REQUEUED, GAVE_UP = 1, 2


@dataclass
class Recovered:
    """What taking back one worker's jobs did."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def note(self, job_id: str, code: int) -> None:
        """Count one recover_job answer."""
        if code == REQUEUED:
            self.requeued.append(job_id)
        elif code == GAVE_UP:
            self.failed.append(job_id)


class Recovery:
    """Recovery steps of one MLQ's namespace."""

    def __init__(self, mlq: MLQ) -> None:
        self.mlq = mlq

    def placement(self, job_id: str) -> tuple[str, int, str | None]:
        """The queue, priority and owner of a job: where it waits when it goes back."""
        queue, priority, owner = self.mlq.client.hmget(self.mlq.keys.job(job_id),
                                                       ["queue", "priority", "owner"])
        return unpack(queue) or DEFAULT_QUEUE, unpack(priority) or 0, unpack(owner)

    def recover_job(self, job_id: str, worker_id: str, max_retries: int, now: float,
                    reason: str) -> int:
        """Take a job back from a worker: 1 requeued, 2 failed, 0/3 nothing to report."""
        queue, priority, owner = self.placement(job_id)
        # read first: the requeue forgets when the attempt started
        fields = stored_fields(self.mlq, job_id, "requeued", worker_id, now)
        code = int(self.mlq.scripts.requeue(job_id, worker_id, queue, max_retries, now, reason,
                                            priority, owner))
        if code == REQUEUED:
            log.warning("job %s requeued: %s (taken back from %s)", job_id, reason, worker_id,
                        extra=fields)
        elif code == GAVE_UP:
            log.error("job %s failed on %s: %s", job_id, worker_id, reason,
                      extra={**fields, "event": "failed", "error_kind": "lost"})
            self._failure_callback(job_id)
        return code

    def recover_worker(self, worker_id: str, max_retries: int, now: float,
                       reason: str) -> Recovered:
        """Take back every job in a worker's processing list."""
        done = Recovered()
        client, keys = self.mlq.client, self.mlq.keys
        for raw_id in client.lrange(keys.processing(worker_id), 0, -1):
            done.note(raw_id.decode(), self.recover_job(raw_id.decode(), worker_id,
                                                        max_retries, now, reason))
        return done

    def fail_job(self, job_id: str, worker_id: str, attempt: int, reason: str,
                 now: float | None = None, error_kind: str | None = None) -> bool:
        """Fail a running attempt from outside it (time limit, OOM); fenced like a finish."""
        now = time.time() if now is None else now
        done = bool(self.mlq.scripts.finish(job_id, worker_id, attempt, FAILED, now,
                                            failed(reason, kind=error_kind or "error"),
                                            ttl=self.mlq.result_ttl))
        if done:
            log.error("job %s failed on %s: %s", job_id, worker_id, reason,
                      extra=stored_fields(self.mlq, job_id, "failed", worker_id, now))
            self._failure_callback(job_id)
        return done

    def _failure_callback(self, job_id: str) -> None:
        callback = unpack(self.mlq.client.hget(self.mlq.keys.job(job_id), "callback"))
        if callback:
            self.mlq.callbacks.send(callback, False, job_id, None)

    # -- dead letters -----------------------------------------------------------------
    def requeue_dead(self, job_id: str | None = None) -> int:
        """Requeue one dead letter, or all of them. All: the set is claimed in one
        atomic step, so requeues of all running at once share it out, and a job that
        fails again at once stays dead rather than being requeued twice."""
        scripts = self.mlq.scripts
        if job_id is not None:
            if not int(scripts.requeue_dead(job_id, *self.placement(job_id))):
                raise JobNotFound(f"job {job_id!r} is not a dead letter")
            return 1
        return self._for_each_claimed(
            lambda one, claim: int(scripts.requeue_dead(one, *self.placement(one), dead=claim)))

    def purge_dead(self, job_id: str | None = None) -> int:
        """Delete one dead letter, or all of them (claimed as for requeue_dead)."""
        scripts = self.mlq.scripts
        scripts.tally()  # its ids reach the indexes before they leave them
        if job_id is not None:
            if not int(scripts.purge_dead(job_id, self.placement(job_id)[0])):
                raise JobNotFound(f"job {job_id!r} is not a dead letter")
            return 1
        return self._for_each_claimed(
            lambda one, claim: int(scripts.purge_dead(one, self.placement(one)[0], dead=claim)))

    def _for_each_claimed(self, act: Callable[[str, str], int]) -> int:
        client, keys = self.mlq.client, self.mlq.keys
        token = uuid.uuid4().hex
        now = time.time()
        ids = self.mlq.scripts.claim_dead(token, now, now - defaults.DEAD_CLAIM_ABANDONED)
        claim = keys.dead_claim(token)
        count = 0
        for done, one in enumerate(ids, 1):
            count += act(one, claim)
            if done % 100 == 0:  # still alive: nobody folds this claim back
                client.zadd(keys.dead_claims, {token: time.time()})
        client.delete(claim)
        client.zrem(keys.dead_claims, token)
        return count
