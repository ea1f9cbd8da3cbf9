"""Reading a namespace as a whole: how many jobs wait, pages of jobs by status and
queue, the counters, the dead letters and the workers' heartbeats. What the
dashboard, `controller status` / `top` and /metrics show; MLQ's methods of the
same names delegate here.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis

from .errors import InvalidMessage
from .heartbeat import workers
from .job import DEFERRED, QUEUED, RUNTIME_BUCKETS, SCHEDULED, STARTED, STATUSES, bucket_field
from .keys import DEFAULT_QUEUE, Keys, check_name
from .metrics import Labelled, parse
from .record import RECORD_FIELDS, record_from_hash
from .serialization import unpack

#: Largest page list_jobs returns.
MAX_PAGE = 500


class Listing:
    """Read-only views of one namespace."""

    def __init__(self, client: redis.Redis, keys: Keys, scripts: Any = None) -> None:
        self.client = client
        self.keys = keys
        #: the counters are read after scripts.tally() (metrics.lua); a Listing
        #: without scripts reads no counters (the asyncio client's job_count)
        self.scripts = scripts

    def history(self, minutes: int = 60, now: float | None = None) -> list[dict[str, int]]:
        """Jobs completed and failed per minute over the last `minutes`, oldest first:
        [{"minute": epoch seconds // 60, "completed": n, "failed": n}, ...] (the
        finish step counts them in Keys.history; one round trip)."""
        last = int((time.time() if now is None else now) // 60)
        wanted = range(last - minutes + 1, last + 1)
        pipe = self.client.pipeline(transaction=False)
        self.scripts.tally(client=pipe)
        for minute in wanted:
            pipe.hmget(self.keys.history(minute), ["completed", "failed"])
        return [{"minute": minute, "completed": int(done or 0), "failed": int(failed or 0)}
                for minute, (done, failed) in zip(wanted, pipe.execute()[1:])]

    def job_count(self, queue: str = DEFAULT_QUEUE) -> int:
        """Jobs waiting in `queue`: every priority lane and every owner's list."""
        check_name("queue", queue)
        owners = [o.decode() for o in self.client.lrange(self.keys.owners(queue), 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for lane in self.keys.lanes(queue) + [self.keys.owned(queue, o) for o in owners]:
            pipe.llen(lane)
        return sum(int(n) for n in pipe.execute())

    def queue_names(self) -> list[str]:
        self.catch_up()
        return self._known_queues()

    def _known_queues(self) -> list[str]:  # once caught up
        return sorted(q.decode() for q in self.client.smembers(self.keys.queues)) or [DEFAULT_QUEUE]

    def catch_up(self) -> None:
        """Write the indexes and counters that posts and finishes left for later
        (index_log.lua, metrics.lua), before reading them."""
        if self.scripts is not None:
            self.scripts.tally()

    def stats(self) -> dict[str, Any]:
        """Counts and counters shared by every process (for status and metrics)."""
        pipe = self.client.pipeline(transaction=False)
        self.scripts.tally(client=pipe)  # caught up: the queue names and counters after it
        pipe.smembers(self.keys.queues)
        pipe.zcard(self.keys.running)
        pipe.llen(self.keys.dead)
        pipe.hgetall(self.keys.stats)
        pipe.get(self.keys.counter)
        pipe.zcard(self.keys.scheduled)
        pipe.hlen(self.keys.waiting_on)
        _, names, processing, dead, raw, ids, scheduled, deferred = pipe.execute()
        queues = sorted(q.decode() for q in names) or [DEFAULT_QUEUE]
        waiting = {queue: self.job_count(queue) for queue in queues}
        counters = {k.decode(): v.decode() for k, v in raw.items()}
        buckets = [(b, int(counters.get(bucket_field(b), 0))) for b in RUNTIME_BUCKETS]
        return {
            "waiting": sum(waiting.values()), "waiting_by_queue": waiting,
            "processing": int(processing), "dead": int(dead),
            "posted": int(ids or 0),  # each post takes the next id, and only posts do
            "completed": int(counters.get("completed", 0)),
            "failed": int(counters.get("failed", 0)),
            "requeued": int(counters.get("requeued", 0)),
            "cancelled": int(counters.get("cancelled", 0)),
            "expired": int(counters.get("expired", 0)),
            "retried": int(counters.get("retried", 0)),
            "scheduled": int(scheduled), "deferred": int(deferred),
            "runtime_buckets": buckets,
            "runtime_sum": float(counters.get("runtime_sum", 0.0)),
        }

    def labelled_metrics(self) -> Labelled:
        """Counters and histograms by queue, function and error kind (metrics.py)."""
        pipe = self.client.pipeline(transaction=False)
        self.scripts.tally(client=pipe)
        pipe.hgetall(self.keys.metrics)
        return parse(pipe.execute()[1])

    def workers(self) -> list[dict[str, Any]]:
        """Every known worker with its last heartbeat; `alive` False once it expired."""
        return workers(self.client, self.keys)

    def dead_by_queue(self) -> dict[str, int]:
        """Dead letters per queue, reading one field of each dead record."""
        ids = [i.decode() for i in self.client.lrange(self.keys.dead, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.keys.job(job_id), "queue")
        counts: dict[str, int] = {}
        for raw in (pipe.execute() if ids else []):
            name = unpack(raw) or DEFAULT_QUEUE
            counts[name] = counts.get(name, 0) + 1
        return counts

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead records, oldest first."""
        ids = [i.decode() for i in self.client.lrange(self.keys.dead, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.keys.job(job_id))
        return [record_from_hash(raw) for raw in (pipe.execute() if ids else []) if raw]

    def list_jobs(self, status: str | None = None, queue: str | None = None, offset: int = 0,
                  limit: int = 50) -> tuple[int, list[dict[str, Any]]]:
        """(how many match, one page of their records newest first, without `result`).

        Pages come from Redis sorted sets and lists, so no listing loads every job:
        queued jobs are read from their queues' lists, started ones from the
        running set, finished ones from per-status indexes.
        """
        if status is not None and status not in STATUSES:
            raise InvalidMessage(f"status must be one of {', '.join(STATUSES)}")
        offset, limit = max(int(offset), 0), min(max(int(limit), 1), MAX_PAGE)
        self.catch_up()
        if status == QUEUED:
            total, ids = self._queued_page(queue, offset, limit)
        elif status == DEFERRED:
            total, ids = self._deferred_page(queue, offset, limit)
        else:
            total, ids = self._index_page(status, queue, offset, limit)
        fields = [f for f in RECORD_FIELDS if f != "result"]
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), fields)
        records = []
        for values in (pipe.execute() if ids else []):
            if values[0] is None:
                continue  # expired (result TTL) or purged meanwhile
            records.append({f: unpack(v) for f, v in zip(fields, values)})
        return total, records

    def _index_page(self, status: str | None, queue: str | None, offset: int,
                    limit: int) -> tuple[int, list[str]]:
        if status in (STARTED, SCHEDULED):  # scored by start time / due time
            keys = [self.keys.running if status == STARTED else self.keys.scheduled]
        else:
            keys = [self.keys.index_status(status)] if status else [self.keys.index_all]
        if queue:
            keys.append(self.keys.index_queue(queue))
        if len(keys) == 1:
            index = keys[0]
        else:  # status and queue: intersect into a short-lived key of the namespace
            index = self.keys.index_scratch(uuid.uuid4().hex)
            pipe = self.client.pipeline(transaction=True)
            # MAX keeps the first set's order: start times (running) exceed ids
            pipe.zinterstore(index, keys, aggregate="MAX")
            pipe.expire(index, 30)
            pipe.execute()
        try:
            total = int(self.client.zcard(index))
            ids = [i.decode() for i in self.client.zrevrange(index, offset, offset + limit - 1)]
        finally:
            if index not in keys:
                self.client.delete(index)
        return total, ids

    def _deferred_page(self, queue: str | None, offset: int,
                       limit: int) -> tuple[int, list[str]]:
        """Deferred ids, newest first: the keys of the waiting_on hash."""
        ids = sorted((int(i) for i in self.client.hkeys(self.keys.waiting_on)), reverse=True)
        if queue:
            pipe = self.client.pipeline(transaction=False)
            for job_id in ids:
                pipe.zscore(self.keys.index_queue(queue), job_id)
            ids = [i for i, score in zip(ids, pipe.execute() if ids else []) if score is not None]
        return len(ids), [str(i) for i in ids[offset:offset + limit]]

    def _queued_page(self, queue: str | None, offset: int, limit: int) -> tuple[int, list[str]]:
        """Queued ids, newest first, from the queues' lists (each newest at its head)."""
        names = [queue] if queue else self._known_queues()
        lanes = [lane for name in names for lane in self.keys.lanes(name)]
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.lrange(self.keys.owners(name), 0, -1)
        for name, owners in zip(names, pipe.execute()):
            lanes += [self.keys.owned(name, owner.decode()) for owner in owners]
        pipe = self.client.pipeline(transaction=False)
        for lane in lanes:
            pipe.llen(lane)
        lengths = pipe.execute()
        total = sum(lengths)
        held = [lane for lane, length in zip(lanes, lengths) if length]
        if len(held) == 1:
            page = self.client.lrange(held[0], offset, offset + limit - 1)
            return total, [i.decode() for i in page]
        pipe = self.client.pipeline(transaction=False)
        for lane in held:
            pipe.lrange(lane, 0, offset + limit - 1)
        ids = sorted({int(i) for page in pipe.execute() for i in page}, reverse=True)
        return total, [str(i) for i in ids[offset:offset + limit]]
