"""Waiting for jobs, pushed by Redis pub/sub (the process's one subscription,
dispatch.py): never a sleep loop."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import redis

from .dispatch import RESYNC, Inbox, dispatcher, live_dispatcher
from .errors import REDIS_DOWN, JobNotFound
from .job import TERMINAL
from .keys import Keys
from .record import ended_by
from .serialization import decode_event, pack

#: Even with pub/sub, re-read the record this often while waiting, so a message
#: lost to a reconnect costs at most this much delay.
RECHECK_INTERVAL = 5.0

#: A wait or an event stream rides out a lost Redis for this long (a failover takes
#: a few seconds), trying again after each of these pauses, doubling up to the second.
OUTAGE_LIMIT = 30.0
OUTAGE_BACKOFF = (0.1, 1.0)

class _Outage:
    """Rides out a lost Redis: a Sentinel failover or a restart takes seconds, and a
    wait or an event stream should outlive it. Past OUTAGE_LIMIT the error stands."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.delay = OUTAGE_BACKOFF[0]

    def over(self) -> None:
        self.since = None

    def ride(self, error: BaseException, deadline: float | None = None) -> None:
        """Wait before the next try, or raise `error` when it is time to give up."""
        now = time.monotonic()
        if self.since is None:
            self.since, self.delay = now, OUTAGE_BACKOFF[0]
        if now - self.since > OUTAGE_LIMIT or (deadline is not None and now + self.delay > deadline):
            raise error
        time.sleep(self.delay)
        self.delay = min(self.delay * 2, OUTAGE_BACKOFF[1])


class OwnPosts:
    """The jobs one client posted while its process's subscription was up.

    Every event of such a job reaches the subscription, and the ones that came
    before its wait began are kept there (Dispatcher.mark): a wait for it reads
    nothing first. While the client waits for the jobs it posts, its posts are
    also marked waited for from the start, so that each finish sends the record
    along with its event (finish.lua) and the wait reads nothing at all.
    """

    #: Marks kept: a client that posts this many jobs without waiting for them
    #: is not one that waits for what it posts.
    KEPT = 1024
    WAITED = ["waited", pack(True)]

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client, self.keys = client, keys
        self._marks: dict[str, tuple[int, int]] = {}
        self._waits_for_posts = False
        self._lock = threading.Lock()

    def mark(self) -> tuple[tuple[int, int] | None, list[Any]]:
        """Taken before a post is sent: (the mark, the record fields to add)."""
        found = live_dispatcher(self.client, self.keys)
        mark = found.mark() if found is not None else None
        return mark, self.WAITED if mark is not None and self._waits_for_posts else []

    def posted(self, job_id: str, mark: tuple[int, int] | None) -> None:
        if mark is None:
            return
        with self._lock:
            self._marks[job_id] = mark
            if len(self._marks) > self.KEPT:
                del self._marks[next(iter(self._marks))]
                self._waits_for_posts = False

    def since(self, job_id: str) -> tuple[int, int] | None:
        """The mark of a job this client posted, once (a second wait reads first)."""
        with self._lock:
            mark = self._marks.pop(job_id, None)
            self._waits_for_posts = self._waits_for_posts or mark is not None
            return mark


def wait_for_terminal(client: redis.Redis, keys: Keys, job_id: str,
                      read_record: Callable[[], dict[str, Any]],
                      timeout: float | None = None,
                      read_status: Callable[[], tuple[str, dict[str, Any] | None]] | None = None,
                      since: tuple[int, int] | None = None) -> dict[str, Any]:
    """Block until the job is completed or failed and return its record.

    Listens first, then reads the job's state, so an event published between
    the two is not missed. `read_status`, when given, is that cheaper first
    look: (status, the ended job's record if it came along; else it is read).
    `since`: the mark taken before the job was posted (OwnPosts); where the
    subscription has every event since then, no first look is needed.
    TimeoutError when `timeout` passes first.
    """
    def ended() -> dict[str, Any] | None:
        if read_status is not None:
            status, record = read_status()
            if status not in TERMINAL:
                return None
            if record is not None:
                return record
        record = read_record()
        return record if record["status"] in TERMINAL else None

    deadline = None if timeout is None else time.monotonic() + timeout
    outage = _Outage()
    with _listening(client, keys, keys.job_channel(job_id), outage, deadline, since) as inbox:
        # read the state: first (unless caught up), after a quiet period, after an outage
        look = not inbox.caught_up
        while True:
            try:
                record = ended() if look else None
                outage.over()
            except REDIS_DOWN as exc:
                outage.ride(exc, deadline)
                continue
            if record is not None:
                return record
            wait = RECHECK_INTERVAL
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise TimeoutError(f"job {job_id} not finished within {timeout} s")
            message = inbox.get(wait)
            look = message is None or message is RESYNC
            if not look:
                over, record = ended_by(message)
                if record is not None:
                    return record
                look = over  # the record tells: the outcome may be an earlier run's


@contextmanager
def _listening(client: redis.Redis, keys: Keys, channel: str, outage: _Outage,
               deadline: float | None = None,
               since: tuple[int, int] | None = None) -> Iterator[Inbox]:
    """The process's shared subscription, listening on `channel`; a Redis that is
    away when the subscription is first made is ridden out like any outage."""
    while True:
        try:
            dispatcher(client, keys).subscribe()
            outage.over()
            break
        except REDIS_DOWN as exc:
            outage.ride(exc, deadline)
    with dispatcher(client, keys).listen(channel, since=since) as inbox:
        yield inbox


def watch(client: redis.Redis, keys: Keys, job_id: str,
          read_record: Callable[[], dict[str, Any]],
          keepalive: float = 15.0, tick: float | None = None) -> Iterator[dict[str, Any] | None]:
    """Yield the job's state at once, then one dict per status or progress change.

    Yields None when `keepalive` seconds pass with no change (time for a
    keep-alive; the record is read again then, in case an event was lost), and,
    with `tick`, also every `tick` seconds in between (reading nothing). Stops
    after the terminal state.
    """
    def state(event: dict[str, Any] | None = None) -> dict[str, Any]:
        return _state(job_id, read_record, event)

    outage = _Outage()
    with _listening(client, keys, keys.job_channel(job_id), outage) as inbox:
        last = state()
        yield dict(last)
        look = False  # read the record now (after an outage) instead of waiting first
        quiet_since = time.monotonic()
        while last["status"] not in TERMINAL:
            message = None
            if not look:
                left = max(keepalive - (time.monotonic() - quiet_since), 0.0)
                message = inbox.get(left if tick is None else min(tick, left))
                if message is None and time.monotonic() - quiet_since < keepalive:
                    yield None  # a tick
                    continue
            try:
                # nothing pushed: confirm from the record, in case a reconnect dropped an event
                event = None if message is None or message is RESYNC else decode_event(message)
                current = event if event is not None and event["status"] not in TERMINAL \
                    else state(event)
                outage.over()
            except REDIS_DOWN as exc:
                outage.ride(exc)
                look = True
                yield None  # a keep-alive while Redis is away
                continue
            quiet, look = message is None and not look, False
            if current != last or quiet:
                quiet_since = time.monotonic()
            if current != last:
                last = current
                yield dict(current)
            elif quiet:
                yield None


def _state(job_id: str, read_record: Callable[[], dict[str, Any]],
           event: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job's state as its record has it. For an outcome `event` the record tells
    whether the job ended: one read off the connection only after a requeue is the
    earlier run's (the event stands where the record went since)."""
    try:
        record = read_record()
    except JobNotFound:
        if event is None:
            raise
        return event
    return {"id": str(job_id), "status": record["status"], "progress": record["progress"]}
