"""Waiting for jobs, pushed by Redis pub/sub: never a sleep loop."""

from __future__ import annotations

import threading
import time
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import redis

from .errors import REDIS_DOWN
from .job import TERMINAL
from .keys import Keys
from .record import event_record
from .serialization import decode_event

#: Even with pub/sub, re-read the record this often while waiting, so a message
#: lost to a reconnect costs at most this much delay.
RECHECK_INTERVAL = 5.0

#: A wait or an event stream rides out a lost Redis for this long (a failover takes
#: a few seconds), trying again after each of these pauses, doubling up to the second.
OUTAGE_LIMIT = 30.0
OUTAGE_BACKOFF = (0.1, 1.0)

#: Idle subscriber connections kept per client: a fresh connection costs several
#: round trips (connect, HELLO, CLIENT SETINFO), more than the wait it serves.
IDLE_SUBSCRIBERS = 8

_idle: weakref.WeakKeyDictionary[redis.Redis, list[redis.client.PubSub]] = weakref.WeakKeyDictionary()
_idle_lock = threading.Lock()


@contextmanager
def _subscribed(client: redis.Redis, channel: str) -> Iterator[redis.client.PubSub]:
    """A pub/sub connection subscribed to `channel` alone, reused across waits.

    A reused connection is first read up to the confirmation of its last
    unsubscribe: a message published before it (the same job's, when a job is
    waited for again after a requeue) must not pass for a new one.
    """
    with _idle_lock:
        idle = _idle.setdefault(client, [])
        pubsub = idle.pop() if idle else None
    if pubsub is not None and not _drained(pubsub):
        pubsub.close()
        pubsub = None
    if pubsub is None:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
    reusable = False
    try:
        pubsub.subscribe(channel)
        yield pubsub
        pubsub.unsubscribe(channel)
        reusable = True
    finally:
        with _idle_lock:
            idle = _idle.setdefault(client, [])
            if reusable and len(idle) < IDLE_SUBSCRIBERS:
                idle.append(pubsub)
                pubsub = None
        if pubsub is not None:
            pubsub.close()


def _drained(pubsub: redis.client.PubSub, timeout: float = 1.0) -> bool:
    """Discard what a connection still delivers for its earlier subscriptions; False
    when they are not all confirmed gone within `timeout` (the caller drops it)."""
    deadline = time.monotonic() + timeout
    try:
        while pubsub.channels or pubsub.pending_unsubscribe_channels:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pubsub.get_message(timeout=remaining)
    except REDIS_DOWN:
        return False
    return True


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


def wait_for_terminal(client: redis.Redis, keys: Keys, job_id: str,
                      read_record: Callable[[], dict[str, Any]],
                      timeout: float | None = None,
                      read_status: Callable[[], str] | None = None) -> dict[str, Any]:
    """Block until the job is completed or failed and return its record.

    Subscribes first, then reads the job's state, so an event published between
    the two is not missed. `read_status`, when given, is that cheaper first
    look (the record is read once the job has ended). TimeoutError when
    `timeout` passes first.
    """
    def ended() -> dict[str, Any] | None:
        if read_status is not None and read_status() not in TERMINAL:
            return None
        record = read_record()
        return record if record["status"] in TERMINAL else None

    deadline = None if timeout is None else time.monotonic() + timeout
    channel = keys.job_channel(job_id)
    outage = _Outage()
    with _subscribed(client, channel) as pubsub:
        look = True  # read the state: first, after a quiet period, after an outage
        while True:
            try:
                record = ended() if look else None
                if record is not None:
                    return record
                wait = RECHECK_INTERVAL
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        raise TimeoutError(f"job {job_id} not finished within {timeout} s")
                message = _next_message(pubsub, channel, wait)
                outage.over()
                look = message is None
                if message is not None and decode_event(message["data"])["status"] in TERMINAL:
                    return event_record(message["data"]) or read_record()
            except REDIS_DOWN as exc:
                outage.ride(exc, deadline)  # the pub/sub connection subscribes again by itself
                look = True


def watch(client: redis.Redis, keys: Keys, job_id: str,
          read_record: Callable[[], dict[str, Any]],
          keepalive: float = 15.0) -> Iterator[dict[str, Any] | None]:
    """Yield the job's state at once, then one dict per status or progress change.

    Yields None when `keepalive` seconds pass with no change (time for a
    keep-alive), and stops after the terminal state.
    """
    channel = keys.job_channel(job_id)

    def state() -> dict[str, Any]:
        record = read_record()
        return {"id": str(job_id), "status": record["status"], "progress": record["progress"]}

    outage = _Outage()
    with _subscribed(client, channel) as pubsub:
        last = state()
        yield dict(last)
        look = False  # read the record now (after an outage) instead of waiting first
        while last["status"] not in TERMINAL:
            try:
                message = None if look else _next_message(pubsub, channel, keepalive)
                # nothing pushed: confirm from the record, in case a reconnect dropped an event
                current = state() if message is None else decode_event(message["data"])
                outage.over()
            except REDIS_DOWN as exc:
                outage.ride(exc)
                look = True
                yield None  # a keep-alive while Redis is away
                continue
            quiet, look = message is None and not look, False
            if current != last:
                last = current
                yield dict(current)
            elif quiet:
                yield None


def _next_message(pubsub: redis.client.PubSub, channel: str,
                  timeout: float) -> dict[str, Any] | None:
    """The next message published on `channel` within `timeout`, or None once it
    has passed.

    get_message returns None early for the subscribe confirmation it swallows;
    that is not a quiet period, so keep waiting out the rest of the time.
    """
    deadline = time.monotonic() + timeout
    while True:
        message = pubsub.get_message(timeout=max(deadline - time.monotonic(), 0.0))
        if message is not None and message["channel"] not in (channel, channel.encode()):
            continue  # left over from the connection's previous subscription
        if message is not None or time.monotonic() >= deadline:
            return message
