"""The job record: every field a record may hold, and the outcomes that change it.

A record is a Redis hash whose values are each msgpack (serialization.py), so
that a Lua step can rewrite one field without touching a large result. Python
and the Lua steps both write fields; none may write a field that is not
declared here (tests/test_record.py runs every step and checks the hash).

The fields each outcome writes are declared here once and rendered into the Lua
prelude of the steps that write them (`lua_prelude`): a post and a dead letter's
requeue start a record from the same FRESH_ATTEMPT, so a requeued record starts
as clean as a new one.
"""

from __future__ import annotations

import secrets
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from . import defaults
from .callbacks import check_callback_url
from .errors import InvalidMessage, JobNotFound, ListenerError
from .job import CANCELLED as CANCELLED_STATUS
from .job import COMPLETED, EXPIRED as EXPIRED_STATUS, FAILED, QUEUED, TERMINAL, error_kind,\
    split_outcome
from .keys import PRIORITIES, Keys, check_function_name, check_name
from .serialization import (
    ApartResult, apart_value, pack, pack_fields, pack_result, unpack, unpack_raw_from_lua,
)


@dataclass(frozen=True)
class Field:
    """One field: its name, what it holds, and whether users see it in the record."""

    name: str
    holds: str
    public: bool = True


FIELDS: tuple[Field, ...] = (
    # the record users read (SPEC §4), in this order
    Field("id", "the job id, a decimal string"),
    Field("timestamp", "when it was posted (epoch seconds)"),
    Field("worker", "the worker running it now, or None"),
    Field("processing_started", "when the current or last attempt started"),
    Field("processing_finished", "when the last attempt ended"),
    Field("progress", "None queued, 0 started, 100 completed, -1 failed, or a listener's value"),
    Field("short_result", "a short text of the result"),
    Field("result", "what the listener returned, or the reason it failed"),
    Field("callback", "URL told of the outcome, or None"),
    Field("retries", "attempts taken back from workers that died or ran out of time"),
    Field("functions", "names of the listeners to run, or None for every one"),
    Field("msg", "the message"),
    Field("status", "queued, scheduled, deferred, started, completed, failed, cancelled "
                    "or expired"),
    Field("error", "the failure's traceback or reason, or None"),
    Field("timeout", "seconds an attempt may run, or None"),
    Field("queue", "the queue it waits in"),
    Field("priority", "0-9, higher first"),
    Field("owner", "who it is shared fairly for, or None"),
    Field("attempt", "how many attempts started; a finish names the attempt it ends"),
    Field("last_error", "why the last attempt was taken back"),
    Field("error_kind", "'error', 'oom', 'dependency', 'cancelled', 'expired', or 'lost' "
                        "(taken back from its workers too often), for a job that did not "
                        "complete, else None"),
    Field("link_salt", "what ties a signed result link to this job and no later one"),
    Field("next_attempt_at", "while scheduled: when it is due (a delay, or a retry's backoff)"),
    Field("expires_at", "a job not started by then expires, or None"),
    Field("retry", "{retries, backoff, backoff_max, retry_on}: retries after an exception"),
    Field("key", "the dedup key it was posted with, or None"),
    Field("depends_on", "ids that must complete before it runs, or None"),
    Field("call_name", "a submitted call's function as 'module.qualname', or None"),
    Field("call_args", "a submitted call's arguments as short text (at most 200 "
                       "characters), or None"),
    # bookkeeping the steps keep; the record read through the library leaves them out
    Field("finished_by", "worker#attempt whose finish counted (a finish sent twice is "
                         "recognised)", public=False),
    Field("cancel_requested", "True once a cancel reached it while it ran", public=False),
    Field("exception", "a submitted call's exception, pickled and signed", public=False),
    Field("call", "True for a submitted call (MLQ.submit): msg carries the function",
          public=False),
    Field("stored_result", "{size, type} of a result kept in a key of its own (Keys.result)",
          public=False),
    Field("key_ttl", "seconds the dedup key outlives the job", public=False),
    Field("has_dependents", "True once a job waits for it (Keys.dependents)", public=False),
    Field("waited", "True once MLQ.wait looked at it, or from its post by a client that "
                    "waits for its posts (events.OwnPosts): the finish sends the record "
                    "with its event (await.lua)", public=False),
    Field("streamed", "True once a listener emitted a chunk: the finish ends the stream "
                      "(streams.py)", public=False),
    Field("lane_seq", "its number among the jobs that joined its lane at the back "
                      "(Keys.lane_joined; position.py), or none after a requeue to the head",
          public=False),
)

RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.public)
DECLARED: frozenset[str] = frozenset(f.name for f in FIELDS)
#: The record of a submitted call carries this field (True).
CALL_FIELD = "call"
#: The field that marks a result kept apart (Keys.result): {"size": bytes, "type":
#: "bytes" or "str"}, with the record's own "result" nil. Readers of the library
#: never see it: they get the whole result in "result".
STORED_RESULT = "stored_result"

#: What a record holds while it waits for an attempt: set by every post, and by a
#: requeue of a dead letter, which gives the job a fresh start.
FRESH_ATTEMPT: dict[str, Any] = {
    "status": QUEUED, "retries": 0, "worker": None, "processing_started": None,
    "processing_finished": None, "progress": None, "short_result": None, "result": None,
    "error": None, "last_error": None, "error_kind": None,
}
#: A job cancelled (waiting, or stopped while it ran): it never runs again.
CANCELLED: dict[str, Any] = {
    "status": CANCELLED_STATUS, "progress": -1, "worker": None, "error": "cancelled",
    "result": "cancelled", "error_kind": "cancelled", "next_attempt_at": None,
}
#: A job that was not started by its deadline (post(expires=...)): it never runs.
EXPIRED: dict[str, Any] = {
    "status": EXPIRED_STATUS, "progress": -1, "worker": None, "error": "not started in time",
    "result": "not started in time", "error_kind": "expired", "next_attempt_at": None,
}
#: A deferred job whose dependency failed, was cancelled or expired: it never runs.
DEPENDENCY_FAILED: dict[str, Any] = {
    "status": FAILED, "progress": -1, "worker": None, "error_kind": "dependency",
    "next_attempt_at": None,
}
#: A job taken back from a worker that died or ran out of time, to run again.
RECOVERED: dict[str, Any] = {
    "status": QUEUED, "progress": None, "worker": None, "processing_started": None,
}
#: A job taken back once too often: it fails and goes to the dead letters.
GAVE_UP: dict[str, Any] = {"status": FAILED, "progress": -1, "worker": None,
                            "error_kind": "lost"}

#: Fields an earlier attempt leaves that no waiting record may keep (a cancel that
#: reached it, how it failed, a result kept apart, when it was due). A new record
#: has none of them: each costs every read of every record.
PAST_ATTEMPT: tuple[str, ...] = ("finished_by", "cancel_requested", "exception", STORED_RESULT,
                                 # a deadline is for the first start: a dead letter
                                 # requeued by hand has none
                                 "next_attempt_at", "expires_at")


# -- reading ------------------------------------------------------------------------
def record_from_hash(raw: Mapping[bytes, bytes] | Iterable[bytes]) -> dict[str, Any]:
    """Decode an HGETALL answer (a dict, or the flat list a Lua step returns): the
    public fields in their order, then whatever else the hash holds."""
    if not isinstance(raw, Mapping):
        items = list(raw)
        raw = dict(zip(items[0::2], items[1::2]))
    decoded = {
        (key.decode() if isinstance(key, bytes) else key): unpack(value)
        for key, value in raw.items()
    }
    record = {name: decoded.pop(name, None) for name in RECORD_FIELDS}
    if record["retries"] is None:
        record["retries"] = 0
    record.update(decoded)
    return record


def read_record(client: redis.Redis, keys: Keys, job_id: str,
                fields: Sequence[str] | None = None) -> dict[str, Any]:
    """A job's record (SPEC §4), or only `fields` of it (and `id`), e.g. to check a
    status without loading a large msg or result; JobNotFound for an unknown id."""
    key = keys.job(job_id)
    if fields is None:
        raw = client.hgetall(key)
        if not raw:
            raise JobNotFound(f"no job {job_id!r}")
        return with_result_kept_apart(client, keys, job_id, record_from_hash(raw))
    names = ["id", *(f for f in fields if f != "id")]
    if "result" in names and STORED_RESULT not in names:
        names.append(STORED_RESULT)
    values = client.hmget(key, names)
    if values[0] is None:
        raise JobNotFound(f"no job {job_id!r}")
    record = {name: unpack(value) for name, value in zip(names, values)}
    return with_result_kept_apart(client, keys, job_id, record) if "result" in record else record


def with_result_kept_apart(client: redis.Redis, keys: Keys, job_id: str,
                           record: dict[str, Any]) -> dict[str, Any]:
    """`record` with a big result kept in its own key (STORED_RESULT) read back in."""
    marker = record.pop(STORED_RESULT, None)
    if not marker:
        return record
    data = client.get(keys.result(job_id))
    if data is None:  # the record expired or was purged since it was read
        raise JobNotFound(f"no job {job_id!r}")
    record["result"] = apart_value(data, marker)
    return record


def read_field(client: redis.Redis, keys: Keys, job_id: str, name: str) -> Any:
    """One field of a job's record; JobNotFound for an unknown id."""
    key = keys.job(job_id)
    value = client.hget(key, name)
    # every stored value is msgpack (None too): no value means no field, and
    # only then is it worth asking whether the job exists at all
    if value is None and not client.exists(key):
        raise JobNotFound(f"no job {job_id!r}")
    return unpack(value)


def event_record(data: bytes) -> dict[str, Any] | None:
    """The record a terminal event carries when someone was waiting and it was
    small; None otherwise."""
    return ended_by(data)[1]


def ended_by(data: bytes) -> tuple[bool, dict[str, Any] | None]:
    """Whether a job event says that its job ended, and the record it carries if
    so (see event_record). Its values stay bytes until needed: a waiter reads
    many events of a job that runs, and only the last one's record."""
    values = unpack_raw_from_lua(data)
    if len(values) < 2 or not isinstance(values[1], bytes) or values[1].decode() not in TERMINAL:
        return False, None
    if len(values) < 4 or not values[3]:
        return True, None
    return True, _as_ended(record_from_hash(values[3]))


def first_look(reply: Any) -> tuple[Any, dict[str, Any] | None]:
    """await.lua's answer for a job that exists: (its status, its record when it has
    ended and the record is small, else None)."""
    if isinstance(reply, bytes):
        return unpack(reply), None
    record = _as_ended(record_from_hash(reply[1])) if len(reply) > 1 else None
    return unpack(reply[0]), record


def _as_ended(record: dict[str, Any]) -> dict[str, Any]:
    # as get_job gives an ended job (position.read_job): no lane number, no place
    record.pop("lane_seq", None)
    record.update(position=None, eta_s=None)
    return record


def is_small(flat: Sequence[bytes]) -> bool:
    """Whether a record (a take's flat field, value list) is small enough for a
    finish to read whole: a message may be megabytes (the scripts use the same size)."""
    return sum(len(value) for value in flat[1::2]) <= defaults.SMALL_RECORD


def handed_over(note: bytes) -> tuple[float, dict[str, Any] | None]:
    """What a post hands an idle worker (post.lua): (when, the started record); no
    record for a large one, which the worker takes."""
    when, *flat = unpack_raw_from_lua(note)
    return float(when), record_from_hash(flat[0]) if flat else None


# -- outcomes: the fields a finish writes ------------------------------------------
#: An attempt's outcome as a finish records it: (status, record fields, short_result).
Outcome = tuple[str, list[Any], "str | None"]


def outcome_of(value: Any, max_result_size: int) -> Outcome:
    """The outcome of a listener that returned `value` (a result too big to store
    fails the job, saying so)."""
    try:
        result, short = split_outcome(value)
        packed = pack_result(result)
        size = len(packed.data if isinstance(packed, ApartResult) else packed)
        if size > max_result_size:
            raise InvalidMessage(f"result of {size} bytes exceeds the limit of "
                                 f"{max_result_size} bytes")
        return COMPLETED, completed(packed, short), short
    except InvalidMessage as exc:
        return FAILED, failed(f"result cannot be stored: {exc}"), None


def outcome_of_error(exc: BaseException) -> Outcome:
    """The outcome of a listener that raised `exc`: its traceback as the error
    (a ListenerError, which is ours, says enough without one)."""
    if isinstance(exc, ListenerError):
        text = str(exc)
    else:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return FAILED, failed(str(exc), text, error_kind(exc)), None

def completed(result: Any, short: str | None) -> list[Any]:
    """A finished attempt's fields; `result` already packed (or kept apart)."""
    return ["result", result, *pack_fields({"short_result": short, "error": None,
                                             "error_kind": None})]


def failed(reason: str, error: str | None = None, kind: str | None = "error",
           exception: bytes | None = None) -> list[Any]:
    """A failed attempt's fields: `reason` as result, `error` (a traceback) or the
    reason as error; a submitted call also keeps its pickled `exception`."""
    fields: dict[str, Any] = {"result": reason, "short_result": None,
                              "error": reason if error is None else error, "error_kind": kind}
    if exception is not None:
        fields["exception"] = exception
    return pack_fields(fields)


# -- a new record --------------------------------------------------------------------
def check_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or priority not in PRIORITIES:
        raise InvalidMessage(f"priority must be an integer from {PRIORITIES[0]} to {PRIORITIES[-1]}")
    return priority


def new_fields(msg: Any, callback: Any, functions: Any, timeout: Any, queue: Any,
               priority: Any = 0, owner: Any = None, *, max_message_size: int) -> list[Any]:
    """The fields a post writes for a new job, checked: the job's own (msg, queue,
    options), packed. The post step adds FRESH_ATTEMPT and the id."""
    if callback is not None:
        if not isinstance(callback, str):
            raise InvalidMessage("callback must be a URL string")
        check_callback_url(callback)
    if isinstance(functions, str):
        functions = [functions]
    if functions is not None:
        functions = list(functions)
        for name in functions:
            check_function_name(name)
    _check_timeout(timeout)
    check_name("queue", queue)
    if owner is not None:
        check_name("owner", owner)
    packed_msg = pack(msg)
    if len(packed_msg) > max_message_size:
        raise InvalidMessage(f"message of {len(packed_msg)} bytes exceeds the limit of "
                             f"{max_message_size} bytes")
    # link_salt: what ties a signed result link to this job and no later one
    return ["timestamp", pack(time.time()), "link_salt", pack(secrets.token_hex(8)),
            "callback", pack(callback),
            "functions", pack(functions), "timeout", pack(timeout), "queue", pack(queue),
            "priority", pack(priority), "owner", pack(owner), "msg", packed_msg]


def _check_timeout(timeout: Any) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidMessage("timeout must be a positive number of seconds")
    if timeout == float("inf"):
        raise InvalidMessage("timeout must be finite")


# -- the Lua side --------------------------------------------------------------------
def _lua_value(value: Any) -> str:
    """`value` packed, as a Lua string literal: a step that loads the prelude on
    every call then builds its tables from constants, not by packing each value."""
    return '"' + "".join(f"\\{byte}" for byte in pack(value)) + '"'


def lua_prelude() -> str:
    """Lua put in front of the steps that write whole outcomes: a function for each
    table above, giving it as a flat field/value list (FRESH_ATTEMPT(), CANCELLED(),
    ...), PAST_ATTEMPT() as a list, and fresh_attempt(job_key), which resets a
    record to what a new one holds."""
    tables = {"FRESH_ATTEMPT": FRESH_ATTEMPT, "CANCELLED": CANCELLED, "EXPIRED": EXPIRED,
              "DEPENDENCY_FAILED": DEPENDENCY_FAILED, "RECOVERED": RECOVERED, "GAVE_UP": GAVE_UP}
    lines = [f"local nil_value = {_lua_value(None)}"]
    # functions, not tables: a step runs the whole prelude on every call, and
    # most calls need none of them
    for name, fields in tables.items():
        pairs = ", ".join(f"'{field}', {_lua_value(value)}" for field, value in fields.items())
        lines.append(f"local function {name}() return {{{pairs}}} end")
    lines.append(f"local function PAST_ATTEMPT() return "
                 f"{{{', '.join(repr(f) for f in PAST_ATTEMPT)}}} end")
    lines += ["local function fresh_attempt(job_key)",
              "  redis.call('HSET', job_key, unpack(FRESH_ATTEMPT()))",
              "  redis.call('HDEL', job_key, unpack(PAST_ATTEMPT()))",
              "end", ""]
    return "\n".join(lines)
