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

from .job import TERMINAL
from .serialization import pack, unpack

if TYPE_CHECKING:
    from .queue import MLQ

#: Entries a job's stream keeps (XADD MAXLEN ~): older chunks give way.
STREAM_MAX = 10_000
#: How long a reader blocks for the next entry before it looks at the job's status.
READ_BLOCK_MS = 1000


class Emitter:
    """One attempt's chunks: each goes to the job's stream at once and is kept for
    the job's result (the list of chunks, unless the listener returns a value)."""

    def __init__(self, mlq: MLQ, job_id: str) -> None:
        self.mlq = mlq
        self.key = mlq.keys.stream(job_id)
        self.chunks: list[Any] = []

    def emit(self, chunk: Any) -> str:
        """Append `chunk`; its entry id (what a reader resumes after)."""
        entry = self.mlq.client.xadd(self.key, {"c": pack(chunk)},
                                     maxlen=self.mlq.stream_max, approximate=True)
        self.chunks.append(chunk)
        return entry.decode()

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
        if not self.chunks:
            return
        pipe = self.mlq.client.pipeline(transaction=False)
        pipe.xadd(self.key, {"end": status}, maxlen=self.mlq.stream_max, approximate=True)
        if ttl:
            pipe.pexpire(self.key, int(ttl * 1000) + 1000)
        pipe.execute()


def read(mlq: MLQ, job_id: str, after: str = "0-0") -> Iterator[tuple[str, Any]]:
    """(entry id, chunk) for each chunk after entry `after`, as they come, until the
    job's end: its end entry, or (a job that streamed nothing) its final status."""
    key = mlq.keys.stream(job_id)
    while True:
        answer = mlq.client.xread({key: after}, count=500, block=READ_BLOCK_MS)
        for _, entries in answer or []:
            for entry_id, fields in entries:
                after = entry_id.decode()
                if b"end" in fields:
                    return
                yield after, unpack(fields[b"c"])
        if not answer and mlq.get_job(job_id, fields=["status"])["status"] in TERMINAL \
                and not mlq.client.exists(key):
            return
