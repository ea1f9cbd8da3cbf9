"""Periodic jobs: a cron expression that posts a job at each of its slots.

Two keys per namespace (keys.py): a hash of definitions by name, and a zset of
each schedule's next slot, so finding what is due is one ZRANGEBYSCORE however
many schedules exist. Any number of processes may call fire_due at once: each
slot's post carries a token naming the schedule and slot, so all of them get
the one job it made, and the zset only ever moves forward (ZADD XX GT).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone as dt_timezone, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from msgpack import UnpackException

from .errors import InvalidMessage
from .keys import DEFAULT_QUEUE, check_name
from .record import check_priority, new_fields
from .serialization import pack, unpack

if TYPE_CHECKING:
    from .queue import MLQ

log = logging.getLogger("mlq")

#: What firing writes into a definition: not part of what the user defined, so
#: left out when checking that a schedule was not replaced while it fired.
_FIRING_FIELDS = ("last_run", "last_job")


def zone(name: Any) -> tzinfo:
    """The time zone `name` (IANA, e.g. "Europe/Berlin"); InvalidMessage if unknown."""
    if name == "UTC":  # needs no time zone database (slim images, Windows)
        return dt_timezone.utc
    if not isinstance(name, str):
        raise InvalidMessage(f"timezone {name!r} must be a name such as 'Europe/Berlin'")
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError) as exc:  # KeyError: ZoneInfoNotFoundError
        raise InvalidMessage(f"unknown timezone {name!r}") from exc


def next_slot(cron: Any, timezone: Any, after: float) -> int:
    """The first slot of `cron`, read in `timezone`, strictly after `after` (epoch s)."""
    if not isinstance(cron, str):
        raise InvalidMessage(f"cron expression {cron!r} must be a string")
    # an aware start: cronsim then follows the zone's DST changes like cron does
    start = datetime.fromtimestamp(after, zone(timezone))
    try:
        return int(next(CronSim(cron, start)).timestamp())
    except CronSimError as exc:
        raise InvalidMessage(f"cron expression {cron!r} is not valid: {exc}") from exc
    except StopIteration:
        raise InvalidMessage(f"cron expression {cron!r} matches no time "
                             "in the next 50 years") from None


def _defined(definition: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in definition.items() if k not in _FIRING_FIELDS}


class Schedules:
    """The periodic jobs of one MLQ namespace."""

    def __init__(self, mlq: MLQ) -> None:
        self.mlq = mlq
        self.client = mlq.client
        self.keys = mlq.keys

    def add(self, name: str, cron: str, msg: Any, *, queue: str = DEFAULT_QUEUE,
            functions: str | list[str] | None = None, timezone: str = "UTC",
            priority: int = 0, timeout: float | None = None,
            now: float | None = None) -> dict[str, Any]:
        """Post `msg` at every slot of `cron` (5 fields, or 6 with seconds first),
        read in `timezone`; the first is the first slot after `now`. Replaces a
        schedule of the same name. Everything is checked before anything is stored."""
        check_name("schedule", name)
        now = time.time() if now is None else now
        next_run = next_slot(cron, timezone, now)
        priority = check_priority(priority)
        # the checks a post makes, now: a schedule that stores is one that can fire
        new_fields(msg, None, functions, timeout, queue, priority,
                   max_message_size=self.mlq.max_message_size)
        if isinstance(functions, str):
            functions = [functions]
        definition = {"name": name, "cron": cron, "msg": msg, "queue": queue,
                      "functions": None if functions is None else list(functions),
                      "timezone": timezone, "priority": priority, "timeout": timeout,
                      "created": time.time()}
        packed = pack(definition)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.schedules, name, packed)
        pipe.zadd(self.keys.schedule_times, {name: next_run})
        pipe.execute()
        # as list() will read it back (msgpack turns tuples into lists...)
        return self._entry(unpack(packed), next_run)

    def remove(self, name: str) -> bool:
        """Stop a schedule; False when there was none of that name."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.keys.schedules, name)
        pipe.zrem(self.keys.schedule_times, name)
        removed, _ = pipe.execute()
        return bool(removed)

    def list(self) -> list[dict[str, Any]]:
        """Every schedule, by name: its definition, `next_run` (epoch seconds),
        and `last_run` (the slot) and `last_job` (its id) of its latest firing."""
        pipe = self.client.pipeline(transaction=True)  # one snapshot of both keys
        pipe.hgetall(self.keys.schedules)
        pipe.zrange(self.keys.schedule_times, 0, -1, withscores=True)
        stored, times = pipe.execute()
        next_runs = {name.decode(): int(score) for name, score in times}
        entries = []
        for raw_name, raw in sorted(stored.items()):
            name = raw_name.decode()
            try:
                definition = unpack(raw)
            except (ValueError, UnpackException) as exc:
                log.warning("schedule %r cannot be read and is left out: %s: %s",
                            name, type(exc).__name__, exc)
                continue
            entries.append(self._entry(definition, next_runs.get(name)))
        return entries

    @staticmethod
    def _entry(definition: dict[str, Any], next_run: int | None) -> dict[str, Any]:
        return {**definition, "next_run": next_run,
                **{field: definition.get(field) for field in _FIRING_FIELDS}}

    def fire_due(self, now: float | None = None) -> list[str]:
        """Post the job of every schedule whose slot is due (at or before `now`);
        the ids. A slot fires once however many processes call this at once
        (racing callers may each report its one id), and slots missed while
        nothing called this fire once, not once each."""
        now = time.time() if now is None else now
        due = self.client.zrangebyscore(self.keys.schedule_times, "-inf", now,
                                        withscores=True)
        if not due:
            return []
        raws = self.client.hmget(self.keys.schedules, [name for name, _ in due])
        posted = []
        for (raw_name, slot), raw in zip(due, raws):
            if raw is None:  # removed since the zset was read
                continue
            job_id = self._fire(raw_name.decode(), raw, int(slot), now)
            if job_id is not None:
                posted.append(job_id)
        return posted

    def _fire(self, name: str, raw: bytes, slot: int, now: float) -> str | None:
        try:
            definition = unpack(raw)
            # from max(now, slot): after a long stop the next slot is the first
            # one to come, not each one missed (no catch-up storm)
            next_run = next_slot(definition["cron"], definition["timezone"], max(now, slot))
            job_id = self.mlq.post(definition["msg"], functions=definition["functions"],
                                   queue=definition["queue"], priority=definition["priority"],
                                   timeout=definition["timeout"], token=f"cron:{name}:{slot}")
        except (ValueError, TypeError, KeyError, UnpackException) as exc:
            # InvalidMessage is a ValueError; a sweep must go on with the others
            log.warning("schedule %r skipped: its definition cannot be used: %s: %s",
                        name, type(exc).__name__, exc)
            return None
        self._advance(name, definition, slot, next_run, job_id)
        return job_id

    def _advance(self, name: str, fired: dict[str, Any], slot: int, next_run: int,
                 job_id: str) -> None:
        """Move the schedule to `next_run` and note the firing, unless it was removed
        or replaced meanwhile: WATCH reruns the check after any change to the hash."""
        def step(pipe: Any) -> None:
            raw = pipe.hget(self.keys.schedules, name)
            current = None if raw is None else unpack(raw)
            if not isinstance(current, dict) or _defined(current) != _defined(fired):
                return
            pipe.multi()
            # XX: a removed schedule stays removed; GT: a caller that fired an older
            # slot late never moves it back
            pipe.zadd(self.keys.schedule_times, {name: next_run}, xx=True, gt=True)
            if (current.get("last_run") or 0) < slot:
                pipe.hset(self.keys.schedules, name,
                          pack({**current, "last_run": slot, "last_job": job_id}))

        self.client.transaction(step, self.keys.schedules)
