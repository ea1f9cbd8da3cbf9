"""Posting jobs: every option checked before anything is written, then one atomic
step per job (or per chunk of jobs)."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple, Protocol

import redis

from .errors import InvalidMessage
from .keys import DEFAULT_QUEUE
from .lifecycle import LifeOptions
from .record import check_priority, new_fields
from .scripts import Lifecycle
from .serialization import pack_fields

if TYPE_CHECKING:
    from .queue import MLQ


@dataclass(frozen=True)
class Posted:
    """What a post made: the job's id, and whether an existing job holding the same
    dedup key was found instead (then no job was made)."""

    id: str
    duplicate: bool = False


#: A post with none of LifeOptions' options.
PLAIN = LifeOptions()
#: The post options LifeOptions checks.
LIFE_OPTIONS = frozenset(LifeOptions.__dataclass_fields__)


def check_replicas(replicas: Any) -> int:
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise InvalidMessage("replicas must be a whole number, 0 or more")
    return replicas


class PostLimits(Protocol):
    """What checking a post needs of the object posting it (MLQ, AsyncMLQ)."""

    min_replicas: int
    max_message_size: int


class PostRequest(NamedTuple):
    """A post, checked: what the post step is sent (Steps.post_call), and the
    replicas to wait for."""

    queue: str
    fields: list[Any]
    priority: int
    owner: str | None
    token: str | None
    replicas: int
    lifecycle: Lifecycle


def checked_post(mlq: PostLimits, msg: Any, callback: str | None = None,
                 functions: list[str] | None = None, *, timeout: float | None = None,
                 queue: str = DEFAULT_QUEUE, priority: int = 0, owner: str | None = None,
                 replicas: int | None = None, token: str | None = None, delay: Any = None,
                 at: Any = None, expires: Any = None, retries: Any = 0, backoff: Any = 1.0,
                 backoff_max: Any = 600.0, retry_on: Any = None, key: Any = None,
                 key_ttl: Any = None, depends_on: Any = None,
                 extra: dict[str, Any] | None = None) -> PostRequest:
    """MLQ.post's arguments checked (InvalidMessage before anything is sent);
    `extra`: record fields of the library's own (a submitted call's)."""
    priority = check_priority(priority)
    replicas = mlq.min_replicas if replicas is None else check_replicas(replicas)
    fields = new_fields(msg, callback, functions, timeout, queue, priority, owner,
                        max_message_size=mlq.max_message_size) + pack_fields(extra or {})
    options = LifeOptions(delay, at, expires, retries, backoff, backoff_max, retry_on, key,
                          key_ttl, depends_on)
    # most posts use none of these: they skip the checks (a post is ~100 µs in all)
    life_fields, life = ([], Lifecycle()) if options == PLAIN else options.checked(time.time())
    return PostRequest(queue, fields + life_fields, priority, owner, token, replicas, life)


def enqueue(mlq: MLQ, msg: Any, callback: str | None = None,
            functions: list[str] | None = None, **options: Any) -> Posted:
    """MLQ.post, saying whether the dedup key found an existing job."""
    request = checked_post(mlq, msg, callback, functions, **options)
    mark, waited = mlq.own_posts.mark()
    try:
        reply = mlq.scripts.post(request.queue, request.fields + waited, None,
                                 request.priority, request.owner, request.token,
                                 request.replicas, request.lifecycle)
    except redis.ResponseError as exc:
        check_dependencies_known(exc)
        raise
    answer = posted(reply)
    if not answer.duplicate:
        mlq.own_posts.posted(answer.id, mark)
    return answer


def check_dependencies_known(error: redis.ResponseError) -> None:
    """InvalidMessage when the post step refused a dependency that is no job."""
    if "unknown dependency" in str(error):
        unknown = str(error).split("unknown dependency", 1)[1].split()[0]
        raise InvalidMessage(f"depends_on: no job {unknown}") from None


def posted(reply: Any) -> Posted:
    """What the post step's reply says: the new id, or [id] of the live job that
    holds the dedup key."""
    if isinstance(reply, list):
        return Posted(str(reply[0]), duplicate=True)
    return Posted(str(reply))


#: What `then` may hold: the message and post's options but depends_on.
FAN_IN_OPTIONS = frozenset(inspect.signature(checked_post).parameters) - {"mlq", "depends_on",
                                                                          "extra"}


class ManyRequest(NamedTuple):
    """A post_many, checked: its records in chunks of one step each, and the fan-in
    job's post arguments (or None)."""

    queue: str
    chunks: list[list[list[Any]]]
    priority: int
    owner: str | None
    replicas: int
    lifecycle: Lifecycle
    then: dict[str, Any] | None


def checked_many(mlq: PostLimits, msgs: Iterable[Any], callback: str | None = None,
                 functions: list[str] | None = None, *, timeout: float | None = None,
                 queue: str = DEFAULT_QUEUE, priority: int = 0, owner: str | None = None,
                 chunk_size: int = 500,
                 extra: dict[str, Any] | list[dict[str, Any]] | None = None,
                 replicas: int | None = None, delay: Any = None, at: Any = None,
                 expires: Any = None, retries: Any = 0, backoff: Any = 1.0,
                 backoff_max: Any = 600.0, retry_on: Any = None,
                 then: dict[str, Any] | None = None) -> ManyRequest:
    """MLQ.post_many's arguments checked: every message before anything is sent.
    `extra`: record fields added to every record, or a list of them, one per message."""
    priority = check_priority(priority)
    replicas = mlq.min_replicas if replicas is None else check_replicas(replicas)
    life_fields, life = LifeOptions(delay, at, expires, retries, backoff, backoff_max,
                                    retry_on).checked(time.time())
    records = [new_fields(m, callback, functions, timeout, queue, priority, owner,
                          max_message_size=mlq.max_message_size) + life_fields
               for m in msgs]
    if extra:
        extras = extra if isinstance(extra, list) else [extra] * len(records)
        records = [fields + pack_fields(more) for fields, more in zip(records, extras, strict=True)]
    if then is not None:
        then = _fan_in(mlq, then)
    chunks = [records[start:start + chunk_size] for start in range(0, len(records), chunk_size)]
    return ManyRequest(queue, chunks, priority, owner, replicas, life, then)


def post_many(mlq: MLQ, msgs: Iterable[Any], callback: str | None = None,
              functions: list[str] | None = None, **options: Any) -> list[str]:
    """MLQ.post_many."""
    request = checked_many(mlq, msgs, callback, functions, **options)
    ids: list[str] = []
    for chunk in request.chunks:
        ids += mlq.scripts.post_many(request.queue, chunk, request.priority, request.owner,
                                     request.replicas, request.lifecycle)
    if request.then is not None:
        then = dict(request.then)
        ids.append(enqueue(mlq, then.pop("msg"), depends_on=ids, **then).id)
    return ids


def _fan_in(mlq: PostLimits, then: Any) -> dict[str, Any]:
    """The fan-in job's post arguments (a dict with "msg" and post's options),
    checked before the fan-out is posted."""
    if not isinstance(then, dict) or "msg" not in then:
        raise InvalidMessage('then must be a dict with a "msg" and post options')
    if "depends_on" in then:
        raise InvalidMessage("then depends on the posted jobs; it takes no depends_on")
    options = dict(then)
    unknown = sorted(set(options) - FAN_IN_OPTIONS)
    if unknown:
        raise InvalidMessage(f"then: unknown option(s) {', '.join(map(str, unknown))}")
    try:
        new_fields(options["msg"], options.get("callback"), options.get("functions"),
                   options.get("timeout"), options.get("queue", DEFAULT_QUEUE),
                   check_priority(options.get("priority", 0)), options.get("owner"),
                   max_message_size=mlq.max_message_size)
        LifeOptions(**{k: v for k, v in options.items() if k in LIFE_OPTIONS}).checked(time.time())
    except TypeError as exc:
        raise InvalidMessage(f"then: {exc}") from None
    return options
