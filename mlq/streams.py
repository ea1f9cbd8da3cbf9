"""Streamed output: a listener's chunks, appended to a capped Redis Stream per job
as they come (a generator listener's yields, or args[0]["emit"](chunk)), read by
anyone from any point: a reader that reconnects resumes after the last entry it
saw, one that comes after the job ended gets every chunk still kept.

Each entry is {"c": chunk} (msgpack: str, bytes and JSON values alike). The step
that records the job's outcome (finish.lua) adds {"end": status}, after which
readers stop, and gives the stream the result's lifetime. A retried job's
chunks follow those of its earlier attempts.
"""

from __future__ import annotations

import inspect
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple

from .dispatch import dispatcher
from .errors import InvalidMessage
from .events import RECHECK_INTERVAL
from .job import TERMINAL
from .serialization import pack, unpack

if TYPE_CHECKING:
    from .queue import MLQ

#: Entries a job's stream keeps (XADD MAXLEN ~): older chunks give way.
STREAM_MAX = 10_000
#: How long a reader waits for news of the next entry before it reads anyway: a
#: notice lost to a reconnect costs at most this much delay (dispatch.py tells
#: readers of a reconnect, so this is a last resort).
READ_WAIT = RECHECK_INTERVAL
#: Entries read per round trip.
READ_COUNT = 500


def checked_max(entries: Any) -> int:
    """`entries`, a whole number of stream entries to keep; InvalidMessage if not."""
    if isinstance(entries, bool) or not isinstance(entries, int) or entries < 1:
        raise InvalidMessage(f"stream_max must be a whole number of chunks, at least 1: "
                             f"{entries!r}")
    return entries


class Emitter:
    """One attempt's chunks: each goes to the job's stream at once and is kept for
    the job's result (the list of chunks, unless the listener returns a value)."""

    def __init__(self, mlq: MLQ, job_id: str) -> None:
        self.mlq = mlq
        self.job_id = job_id
        self.key = mlq.keys.stream(job_id)
        self.channel = mlq.keys.chunks_channel(job_id)
        self.chunks: list[Any] = []

    def emit(self, chunk: Any) -> str:
        """Append `chunk`; its entry id (what a reader resumes after)."""
        pipe = self.mlq.client.pipeline(transaction=False)
        pipe.xadd(self.key, {"c": pack(chunk)}, maxlen=self.mlq.stream_max, approximate=True)
        if not self.chunks:
            # the job's finish ends the stream in the step that records the outcome
            pipe.hset(self.mlq.keys.job(self.job_id), "streamed", pack(True))
        # the notice wakes readers listening through the process's shared
        # subscription (dispatch.py), which then read the stream from where they are
        pipe.publish(self.channel, b"")
        entry = pipe.execute()[0].decode()
        self.chunks.append(chunk)
        return entry

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


class Chunk(NamedTuple):
    id: str  # the stream entry's: what a reader resumes after
    value: Any


class End(NamedTuple):
    status: str  # the job's final one


def read(mlq: MLQ, job_id: str, after: str = "0-0") -> Iterator[tuple[str, Any]]:
    """(entry id, chunk) for each chunk after entry `after`, as they come, until the
    job's end."""
    for entry in entries(mlq, job_id, after):
        if isinstance(entry, Chunk):
            yield entry.id, entry.value


def entries(mlq: MLQ, job_id: str, after: str = "0-0",
            keepalive: float | None = None) -> Iterator[Chunk | End | None]:
    """Each Chunk after entry `after` as it comes, then the End; None after each
    `keepalive` seconds without a chunk (time for a keep-alive), and once at the
    start when no chunk is there yet (an HTTP stream's headers can go out).

    Listens first, then reads, so no chunk is missed. A job that ended without
    an end entry (it streamed nothing, or its worker died) ends when its status
    does: every chunk of an attempt is written before its outcome.
    """
    key = mlq.keys.stream(job_id)
    channels = (mlq.keys.chunks_channel(job_id), mlq.keys.job_channel(job_id))
    quiet_since = float("-inf")
    with dispatcher(mlq.client, mlq.keys).listen(*channels) as inbox:
        ended = None
        while True:
            inbox.clear()  # what the read below covers: only later notices wake it again
            found = mlq.client.xrange(key, min=f"({after}", max="+", count=READ_COUNT)
            for entry_id, fields in found:
                if b"end" in fields:
                    yield End(fields[b"end"].decode())
                    return
                after = entry_id.decode()
                yield Chunk(after, unpack(fields[b"c"]))
            if len(found) == READ_COUNT:
                continue
            if found:
                quiet_since = time.monotonic()
            elif ended is not None:
                yield End(ended)  # read once more after the status was final: all there
                return
            else:
                ended = _final_status(mlq, job_id)
                if ended is not None:
                    continue
            if keepalive is not None and time.monotonic() - quiet_since >= keepalive:
                quiet_since = time.monotonic()
                yield None
            inbox.get(READ_WAIT if keepalive is None else keepalive)


def _final_status(mlq: MLQ, job_id: str) -> str | None:
    status = mlq.get_job(job_id, fields=["status"])["status"]
    return status if status in TERMINAL else None
