"""Streamed output: a listener's chunks, appended to a capped Redis Stream per job
as they come (a generator listener's yields, or args[0]["emit"](chunk)), read by
anyone from any point: a reader that reconnects resumes after the last entry it
saw, one that comes after the job ended gets every chunk still kept.

Each entry is {"c": chunk} (msgpack: str, bytes and JSON values alike), and the
attempt that ends the job adds {"end": status}, after which readers stop.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .dispatch import dispatcher
from .job import TERMINAL
from .serialization import pack, unpack

if TYPE_CHECKING:
    from .queue import MLQ

#: Entries a job's stream keeps (XADD MAXLEN ~): older chunks give way.
STREAM_MAX = 10_000
#: How long a reader waits for news of the next entry before it looks at the job's
#: status (a job that streamed nothing ends without an end entry).
READ_WAIT = 1.0
#: Entries read per round trip.
READ_COUNT = 500


class Emitter:
    """One attempt's chunks: each goes to the job's stream at once and is kept for
    the job's result (the list of chunks, unless the listener returns a value)."""

    def __init__(self, mlq: MLQ, job_id: str) -> None:
        self.mlq = mlq
        self.key = mlq.keys.stream(job_id)
        self.channel = mlq.keys.chunks_channel(job_id)
        self.chunks: list[Any] = []

    def emit(self, chunk: Any) -> str:
        """Append `chunk`; its entry id (what a reader resumes after)."""
        entry = self._append({"c": pack(chunk)})
        self.chunks.append(chunk)
        return entry

    def _append(self, fields: dict[str, Any], ttl: float | None = None) -> str:
        # the notice wakes readers listening through the process's shared
        # subscription (dispatch.py), which then read the stream from where they are
        pipe = self.mlq.client.pipeline(transaction=False)
        pipe.xadd(self.key, fields, maxlen=self.mlq.stream_max, approximate=True)
        if ttl:
            pipe.pexpire(self.key, int(ttl * 1000) + 1000)
        pipe.publish(self.channel, b"")
        return pipe.execute()[0].decode()

    def collect(self, value: Any, run_awaitable: Callable[[Any], Any]) -> Any:
        """What a listener returned, with a generator's yields emitted: the
        generator's own return value, else the chunks."""
        if inspect.isasyncgen(value):
            return run_awaitable(self._collect_async(value))
        if not inspect.isgenerator(value):
            return value
        while True:
            try:
                self.emit(next(value))
            except StopIteration as stop:
                return self._result(stop.value)

    async def _collect_async(self, value: Any) -> Any:
        async for chunk in value:
            self.emit(chunk)
        return self._result(None)

    def _result(self, returned: Any) -> Any:
        return list(self.chunks) if returned is None else returned

    def end(self, status: str, ttl: float | None) -> None:
        """Tell readers the job ended (only if it streamed); the stream then lives as
        long as the job's result."""
        if self.chunks:
            self._append({"end": status}, ttl)


def read(mlq: MLQ, job_id: str, after: str = "0-0") -> Iterator[tuple[str, Any]]:
    """(entry id, chunk) for each chunk after entry `after`, as they come, until the
    job's end: its end entry, or (a job that streamed nothing) its final status."""
    key = mlq.keys.stream(job_id)
    channels = (mlq.keys.chunks_channel(job_id), mlq.keys.job_channel(job_id))
    with dispatcher(mlq.client, mlq.keys).listen(*channels) as inbox:
        while True:
            inbox.clear()  # what the read below covers: only later notices wake it again
            entries = mlq.client.xrange(key, min=f"({after}", max="+", count=READ_COUNT)
            for entry_id, fields in entries:
                after = entry_id.decode()
                if b"end" in fields:
                    return
                yield after, unpack(fields[b"c"])
            if len(entries) == READ_COUNT:
                continue
            if not entries and _ended_without_stream(mlq, job_id, key):
                return
            inbox.get(READ_WAIT)


def _ended_without_stream(mlq: MLQ, job_id: str, key: str) -> bool:
    # a job that streamed has an end entry; one that did not has no stream at all
    return mlq.get_job(job_id, fields=["status"])["status"] in TERMINAL \
        and not mlq.client.exists(key)
