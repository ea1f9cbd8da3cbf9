"""Job events for the asyncio client: one pub/sub connection per AsyncMLQ,
subscribed once (PSUBSCRIBE to every job's event and chunk channels), and a
background task that hands each terminal event to the waiters of its job, and
each chunk notice to the readers of its stream. A wait or a stream costs no
subscribe or unsubscribe round trip, and holds no connection, however many run
at once (as mlq/dispatch.py does for the synchronous client)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import redis.asyncio

from .errors import REDIS_DOWN
from .events import OUTAGE_BACKOFF
from .job import TERMINAL
from .keys import Keys
from .serialization import decode_event

#: How long one read of the subscription waits before it is asked again; the
#: loop only needs a chance to notice that it was cancelled.
LISTEN_TIMEOUT = 1.0


class JobEvents:
    """The shared subscription of one AsyncMLQ and the waiters it serves."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys) -> None:
        self.client = client
        self.patterns = (keys.events_pattern, keys.chunks_pattern)
        self.channel_prefix = keys.job_channel("").encode()
        self.chunks_prefix = keys.chunks_channel("").encode()
        #: job id -> the inboxes of its waiters: a terminal event's payload, or None
        #: for "read the job again" (the subscription was just made again, and
        #: events published while it was away are lost)
        self.waiters: dict[str, set[asyncio.Queue[bytes | None]]] = {}
        #: job id -> the inboxes of its stream's readers: None for each notice
        self.readers: dict[str, set[asyncio.Queue[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def subscribed(self) -> None:
        """Return once the subscription is confirmed: from then on, every event
        of a registered waiter reaches it."""
        if self._task is None or self._task.done():
            self._subscribed = asyncio.Event()
            self._task = asyncio.create_task(self._listen(), name="mlq-aio-events")
        await self._subscribed.wait()

    @contextmanager
    def waiting(self, job_id: str) -> Iterator[asyncio.Queue[bytes | None]]:
        """An inbox for the events of `job_id` while the block runs. Register it
        before reading the job's state, so no event falls between the two."""
        with _registered(self.waiters, job_id) as inbox:
            yield inbox

    @contextmanager
    def reading(self, job_id: str) -> Iterator[asyncio.Queue[None]]:
        """An inbox woken by each chunk appended to the job's stream, by its end,
        and when the subscription was made again."""
        with _registered(self.readers, job_id) as inbox, \
                _registered(self.waiters, job_id, inbox):
            yield inbox

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        pubsub = self.client.pubsub()
        delay = OUTAGE_BACKOFF[0]
        try:
            while True:
                try:
                    if not pubsub.patterns:  # a first subscribe that failed is sent again
                        await pubsub.psubscribe(*self.patterns)
                    message = await pubsub.get_message(timeout=LISTEN_TIMEOUT)
                    delay = OUTAGE_BACKOFF[0]
                except REDIS_DOWN:
                    # the next read connects again and subscribes again by itself
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, OUTAGE_BACKOFF[1])
                    continue
                if message is not None:
                    self._dispatch(message)
        finally:
            await pubsub.aclose()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "psubscribe":  # the first time, or again after an outage
            if message["data"] == len(self.patterns):
                self._subscribed.set()
                self._tell_all(None)
        elif message["type"] != "pmessage":
            return
        elif message["channel"].startswith(self.chunks_prefix):
            job_id = message["channel"][len(self.chunks_prefix):].decode()
            for inbox in self.readers.get(job_id, ()):
                inbox.put_nowait(None)
        elif message["channel"].startswith(self.channel_prefix):
            job_id = message["channel"][len(self.channel_prefix):].decode()
            inboxes = self.waiters.get(job_id)
            if inboxes and decode_event(message["data"])["status"] in TERMINAL:
                for inbox in inboxes:
                    inbox.put_nowait(message["data"])

    def _tell_all(self, payload: bytes | None) -> None:
        for inboxes in [*self.waiters.values(), *self.readers.values()]:
            for inbox in inboxes:
                inbox.put_nowait(payload)


@contextmanager
def _registered(table: dict[str, set[Any]], job_id: str,
                inbox: asyncio.Queue[Any] | None = None) -> Iterator[asyncio.Queue[Any]]:
    inbox = asyncio.Queue() if inbox is None else inbox
    table.setdefault(job_id, set()).add(inbox)
    try:
        yield inbox
    finally:
        inboxes = table.get(job_id, set())
        inboxes.discard(inbox)
        if not inboxes:
            table.pop(job_id, None)
