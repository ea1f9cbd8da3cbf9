"""A job's life besides running once: when it may start, how often it may try,
what it waits for, and what it is known by. The post options are checked here,
before anything is written; the moves themselves are Lua steps (lifecycle.lua).
"""

from __future__ import annotations

import math
import random
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable

from .errors import InvalidMessage
from .scripts import Lifecycle
from .serialization import pack_fields

if TYPE_CHECKING:
    from .record import Outcome

#: The outcome of an attempt whose job is scheduled to run again.
RETRY = "retry"

MAX_RETRIES = 100
MAX_KEY_BYTES = 256
MAX_DEPENDENCIES = 10_000
#: The furthest a job may be put off (delay, at, expires): ten years, so every
#: time a record holds can be read as a date.
MAX_AHEAD = 10 * 365 * 86400.0
DEFAULT_BACKOFF = 1.0
DEFAULT_BACKOFF_MAX = 600.0


class Retry(Exception):
    """Raised by a listener to be run again after `delay` seconds (default: the
    job's backoff). It counts against the job's `retries`."""

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = None if delay is None else _seconds("Retry delay", delay)


@dataclass(frozen=True)
class LifeOptions:
    """The post options of this module, as given; `checked` validates them."""

    delay: Any = None
    at: Any = None
    expires: Any = None
    retries: Any = 0
    backoff: Any = DEFAULT_BACKOFF
    backoff_max: Any = DEFAULT_BACKOFF_MAX
    retry_on: Any = None
    key: Any = None
    key_ttl: Any = None
    depends_on: Any = None

    def checked(self, now: float) -> tuple[list[Any], Lifecycle]:
        """(the record fields to add, what the post step needs); InvalidMessage
        naming the first bad option."""
        if self.delay is not None and self.at is not None:
            raise InvalidMessage("give delay or at, not both")
        due = None
        if self.delay is not None:
            due = now + _seconds("delay", self.delay)
        elif self.at is not None:
            due = parse_time(self.at)
        expires_at = None if self.expires is None else now + _seconds("expires", self.expires,
                                                                       positive=True)
        if max(due or 0, expires_at or 0) > now + MAX_AHEAD:
            raise InvalidMessage("delay, at and expires reach at most ten years ahead")
        fields: dict[str, Any] = {}
        if expires_at is not None:
            fields["expires_at"] = expires_at
        policy = retry_policy(self.retries, self.backoff, self.backoff_max, self.retry_on)
        if policy:
            fields["retry"] = policy
        key = _key(self.key)
        if key is not None:
            fields["key"] = key
            if self.key_ttl is not None:
                fields["key_ttl"] = _seconds("key_ttl", self.key_ttl)
        elif self.key_ttl is not None:
            raise InvalidMessage("key_ttl needs a key")
        depends_on = dependency_ids(self.depends_on)
        if depends_on:
            fields["depends_on"] = list(depends_on)
        return pack_fields(fields), Lifecycle(due, expires_at, key, depends_on)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidMessage(f"{name} must be a finite number")
    return float(value)


def _seconds(name: str, value: Any, positive: bool = False) -> float:
    seconds = _number(name, value)
    if seconds < 0 or (positive and seconds == 0):
        raise InvalidMessage(f"{name} must be a {'positive' if positive else 'non-negative'} "
                             "number of seconds")
    return seconds


def parse_time(value: Any) -> float:
    """Epoch seconds of `at`: a number, a datetime (naive means UTC), or an ISO 8601
    string such as 2026-12-24T08:00:00Z."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise InvalidMessage(f"at {value!r} is not a time: give epoch seconds or ISO 8601 "
                                 "such as 2026-12-24T08:00:00Z") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    return _seconds("at", value)


def retry_policy(retries: Any, backoff: Any, backoff_max: Any,
                 retry_on: Any) -> dict[str, Any] | None:
    """The `retry` field for these options; None for no retries (the default)."""
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise InvalidMessage(f"retries must be a whole number from 0 to {MAX_RETRIES}")
    backoff = _seconds("backoff", backoff)
    backoff_max = _seconds("backoff_max", backoff_max)
    if retry_on is not None:
        if isinstance(retry_on, str):
            retry_on = [retry_on]
        if not isinstance(retry_on, (list, tuple)) or not all(
                isinstance(name, str) and 0 < len(name) <= 200 for name in retry_on):
            raise InvalidMessage("retry_on must be a list of exception class names")
        retry_on = list(retry_on)
    if retries == 0:
        return None
    return {"retries": retries, "backoff": backoff, "backoff_max": backoff_max,
            "retry_on": retry_on}


def _key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidMessage(f"key must be a non-empty string of at most {MAX_KEY_BYTES} bytes")
    return key


def dependency_ids(ids: Any) -> tuple[str, ...]:
    if ids is None:
        return ()
    if isinstance(ids, (str, int)):
        ids = [ids]
    if not isinstance(ids, Iterable):
        raise InvalidMessage("depends_on must be a list of job ids")
    ids = [str(i) for i in ids]
    if len(ids) > MAX_DEPENDENCIES:
        raise InvalidMessage(f"depends_on takes at most {MAX_DEPENDENCIES} ids")
    for job_id in ids:
        if not job_id.isdigit() or not job_id.isascii() or len(job_id) > 20:
            raise InvalidMessage(f"depends_on: {job_id!r} is not a job id")
    return tuple(dict.fromkeys(str(int(i)) for i in ids))


# -- retrying --------------------------------------------------------------------
def retry_delay(record: dict[str, Any], exc: BaseException,
                rng: random.Random | None = None) -> float | None:
    """Seconds until the next attempt of a job whose attempt raised `exc`; None
    when it must fail instead (no retries, none left, or not an exception its
    retry_on names). Full jitter: uniform in 0..min(backoff_max, backoff * 2**k),
    k the retries taken so far."""
    policy = record.get("retry")
    if not policy:
        return None
    # attempts that ended in an exception: every attempt but those taken back
    # from workers that died (counted in `retries`) and the one ending now
    done = max(int(record.get("attempt") or 1) - 1 - int(record.get("retries") or 0), 0)
    if done >= policy["retries"]:
        return None
    if isinstance(exc, Retry):
        if exc.delay is not None:
            return exc.delay
    elif policy.get("retry_on") and not _named(exc, policy["retry_on"]):
        return None
    ceiling = min(policy["backoff_max"], policy["backoff"] * 2 ** done)
    return (rng or random).uniform(0, ceiling)


def _named(exc: BaseException, names: list[str]) -> bool:
    """Whether `exc` is an instance of a class called one of `names` (plain or
    with its module), so a worker need not import the classes to match them."""
    for cls in type(exc).__mro__:
        if cls.__name__ in names or f"{cls.__module__}.{cls.__qualname__}" in names:
            return True
    return False


def retried(record: dict[str, Any], exc: BaseException, now: float) -> Outcome | None:
    """The outcome of an attempt that raised `exc` when its job is to run again
    (retry_delay): scheduled, its traceback kept as last_error; else None."""
    delay = retry_delay(record, exc)
    if delay is None:
        return None
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    # logged by the worker once recorded (joblog.log_outcome), with the job's fields
    return RETRY, pack_fields({"last_error": text, "next_attempt_at": now + delay,
                               "result": None, "short_result": None, "error": None,
                               "error_kind": None}), None
