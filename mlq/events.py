"""Waiting for jobs, pushed by Redis pub/sub: never a sleep loop."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import redis

from .job import TERMINAL
from .keys import Keys
from .serialization import decode_event

#: Even with pub/sub, re-read the record this often while waiting, so a message
#: lost to a reconnect costs at most this much delay.
RECHECK_INTERVAL = 5.0


def wait_for_terminal(client: redis.Redis, keys: Keys, job_id: str,
                      read_record: Callable[[], dict[str, Any]],
                      timeout: float | None = None) -> dict[str, Any]:
    """Block until the job is completed or failed and return its record.

    Subscribes first, then reads the record, so an event published between the
    two is not missed. TimeoutError when `timeout` passes first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(keys.job_channel(job_id))
        record = read_record()
        while record["status"] not in TERMINAL:
            wait = RECHECK_INTERVAL
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise TimeoutError(f"job {job_id} not finished within {timeout} s")
            message = _next_message(pubsub, wait)
            if message is None or decode_event(message["data"])["status"] in TERMINAL:
                record = read_record()
        return record
    finally:
        pubsub.close()


def watch(client: redis.Redis, keys: Keys, job_id: str,
          read_record: Callable[[], dict[str, Any]],
          keepalive: float = 15.0) -> Iterator[dict[str, Any] | None]:
    """Yield the job's state at once, then one dict per status or progress change.

    Yields None when `keepalive` seconds pass with no change (time for a
    keep-alive), and stops after the terminal state.
    """
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(keys.job_channel(job_id))
        record = read_record()
        last = {"id": str(job_id), "status": record["status"], "progress": record["progress"]}
        yield dict(last)
        while last["status"] not in TERMINAL:
            message = _next_message(pubsub, keepalive)
            if message is None:
                # nothing pushed: confirm from the record, in case a reconnect dropped an event
                record = read_record()
                current = {"id": str(job_id), "status": record["status"], "progress": record["progress"]}
                if current != last:
                    last = current
                    yield dict(current)
                else:
                    yield None
                continue
            event = decode_event(message["data"])
            if event != last:
                last = event
                yield dict(event)
    finally:
        pubsub.close()


def _next_message(pubsub: redis.client.PubSub, timeout: float) -> dict[str, Any] | None:
    """The next published message within `timeout`, or None once it has passed.

    get_message returns None early for the subscribe confirmation it swallows;
    that is not a quiet period, so keep waiting out the rest of the time.
    """
    deadline = time.monotonic() + timeout
    while True:
        message = pubsub.get_message(timeout=max(deadline - time.monotonic(), 0.0))
        if message is not None or time.monotonic() >= deadline:
            return message
