"""What an operator does to a namespace as a whole: pause and resume queues,
cancel jobs in bulk, clear everything."""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Iterable

from .errors import InvalidMessage, JobNotFound
from .job import DEFERRED, QUEUED, SCHEDULED, STARTED
from .keys import check_job_id, check_name

if TYPE_CHECKING:
    from .queue import MLQ

#: The statuses a job can be cancelled in.
CANCELLABLE = (QUEUED, SCHEDULED, DEFERRED, STARTED)
#: Most ids one cancel_many takes.
MAX_CANCEL = 10_000


class Control:
    def __init__(self, mlq: MLQ) -> None:
        self.mlq = mlq
        self.client = mlq.client
        self.keys = mlq.keys

    def pause(self, queue: str) -> None:
        check_name("queue", queue)
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(self.keys.paused, queue)
        # no post hands a job of a paused queue to an idle worker: it finds none
        # (and takes do not wait as idle on it while it is paused)
        pipe.delete(self.keys.idle(queue))
        pipe.execute()

    def resume(self, queue: str) -> None:
        """Unpause, and wake the queue's workers: the jobs that waited are there."""
        check_name("queue", queue)
        pipe = self.client.pipeline(transaction=True)
        pipe.srem(self.keys.paused, queue)
        # a wake token is only a hint (lanes.lua keeps the list as short)
        pipe.lpush(self.keys.wake(queue), 1)
        pipe.ltrim(self.keys.wake(queue), 0, 63)
        pipe.execute()

    def paused(self) -> list[str]:
        return sorted(name.decode() for name in self.client.smembers(self.keys.paused))

    def cancel_many(self, ids: Iterable[str | int] | None, queue: str | None) -> list[str]:
        if (ids is None) == (queue is None):
            raise InvalidMessage('give either ids or a queue')
        if ids is None:
            ids = self._ids_in(check_name("queue", queue))
        elif isinstance(ids, (str, int)) or not isinstance(ids, Iterable):
            raise InvalidMessage("ids must be a list of job ids")
        ids = list(ids)
        if len(ids) > MAX_CANCEL:
            raise InvalidMessage(f"at most {MAX_CANCEL} ids at once")
        cancelled = []
        for job_id in self._existing(ids):
            try:
                if self.mlq.cancel(job_id):
                    cancelled.append(str(job_id))
            except JobNotFound:
                continue
        return cancelled

    def _existing(self, ids: list[str | int]) -> list[str]:
        """The ids that name a job, found in one round trip: a bulk cancel of
        thousands of ids, most of them ended and expired, reads nothing else for them."""
        wanted = []
        for job_id in ids:
            with suppress(JobNotFound):
                wanted.append(check_job_id(job_id))
        pipe = self.mlq.client.pipeline(transaction=False)
        for job_id in wanted:
            pipe.exists(self.mlq.keys.job(job_id))
        return [job_id for job_id, found in zip(wanted, pipe.execute() if wanted else []) if found]

    def _ids_in(self, queue: str) -> list[str]:
        """Every waiting and running job of a queue, page by page."""
        found: list[str] = []
        for status in CANCELLABLE:
            offset = 0
            while len(found) < MAX_CANCEL:
                total, page = self.mlq.list_jobs(status, queue, offset=offset, limit=500)
                found += [record["id"] for record in page]
                offset += 500
                if offset >= total:
                    break
        return found[:MAX_CANCEL]

    def clear_all(self) -> int:
        """Delete every key of this namespace and nothing else; returns how many."""
        deleted = 0
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=self.keys.pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += self.client.delete(*batch)
                batch = []
        if batch:
            deleted += self.client.delete(*batch)
        return deleted
