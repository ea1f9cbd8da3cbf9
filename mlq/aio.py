"""The asyncio client: MLQ's producer side for asyncio apps (FastAPI, aiohttp),
on redis.asyncio.

    from mlq.aio import AsyncMLQ

    async with AsyncMLQ("my_app", redis_url="redis://127.0.0.1:6379/0") as q:
        job_id = await q.post({"prompt": "hi"})
        async for entry_id, chunk in q.stream(job_id):
            print(chunk)
        record = await q.wait(job_id, timeout=30)

Each method takes the arguments and gives the answers of MLQ's method of the
same name, and raises the same errors: the checks, the Lua steps and their
arguments (posting.py, scripts.Steps) and the record reading (record.py,
listing.py, through replay.py) are MLQ's own. Workers stay synchronous
(`controller consumer`); this object posts and reads.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from collections.abc import AsyncIterator
from typing import Any, Iterable
from urllib.parse import urlsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from . import defaults
from .aio_events import JobEvents
from .connection import CLUSTER_SCHEMES, CONNECT_TIMEOUT, DEFAULT_PORT, MAX_CONNECTIONS, \
    SENTINEL_SCHEMES, SOCKET_TIMEOUT
from .embedded import default_password
from .errors import InvalidMessage, JobNotFound
from .events import RECHECK_INTERVAL
from .job import TERMINAL
from .keys import DEFAULT_QUEUE, Keys, check_name
from .listing import Listing
from .posting import check_dependencies_known, check_replicas, checked_many, checked_post, \
    posted
from .queue import _check_id
from .position import read_job
from .record import event_record, first_look, with_result_kept_apart
from .replay import evalsha, replayed
from .scripts import Steps, id_range, replicated, script_source
from .serialization import unpack
from .streams import READ_COUNT, READ_WAIT




def connect(redis_url: str | None = None, host: str = "localhost", port: int = DEFAULT_PORT,
            db: int = 0) -> redis.asyncio.Redis:
    """A redis.asyncio client with the settings of connection.connect: bytes
    replies, short timeouts, a few quick retries, the embedded server's password."""
    settings: dict[str, Any] = dict(
        socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2), health_check_interval=30,
        max_connections=MAX_CONNECTIONS)
    if not redis_url:
        return redis.asyncio.Redis(host=host, port=port, db=db,
                                   password=default_password(host, port), **settings)
    scheme = redis_url.partition("://")[0].lower()
    if scheme in SENTINEL_SCHEMES or scheme in CLUSTER_SCHEMES:
        raise InvalidMessage(f"AsyncMLQ builds clients for redis://, rediss:// and unix:// "
                             f"URLs; for {scheme}:// pass client=redis.asyncio...")
    parts = urlsplit(redis_url)
    if parts.scheme == "redis" and parts.password is None:
        settings["password"] = default_password(parts.hostname or "", parts.port or DEFAULT_PORT)
    return redis.asyncio.Redis.from_url(redis_url, **settings)


class _Reader:
    """What MLQ.get_job (position.read_job) uses of an MLQ, over the stand-in client
    of a replayed run (replay.py)."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.scripts = self

    def position(self, keys: list[Any], args: list[Any]) -> Any:
        # the ETA's run times are added up first, as Scripts.position does
        evalsha(self.client, script_source("tally"), *Steps(self.keys).tally_call())
        return evalsha(self.client, script_source("position"), keys, args)


class AsyncMLQ:
    """A namespace of jobs in Redis, for asyncio code: post, read, wait, stream, cancel.

    `client`: a redis.asyncio client of your own (bytes replies: no
    decode_responses), which close() leaves open; else one is built from
    `redis_url`, or host, port and db, as MLQ does.
    """

    def __init__(self, q_name: str, redis_host: str = "localhost", redis_port: int = 6379,
                 redis_db: int = 0, *, redis_url: str | None = None,
                 client: redis.asyncio.Redis | None = None,
                 max_message_size: int = defaults.MAX_MESSAGE_SIZE,
                 min_replicas: int = 0) -> None:
        self.namespace = check_name("namespace", q_name)
        self.keys = Keys(q_name)
        self._own_client = client is None
        self.client = client or connect(redis_url, redis_host, redis_port, redis_db)
        self.max_message_size = max_message_size
        #: replicas every post waits for unless it asks otherwise (see MLQ.post)
        self.min_replicas = check_replicas(min_replicas)
        self.steps = Steps(self.keys)
        self._scripts: dict[str, Any] = {}
        self.events = JobEvents(self.client, self.keys)

    # -- producing ---------------------------------------------------------------
    async def post(self, msg: Any, callback: str | None = None,
                   functions: list[str] | None = None, **options: Any) -> str:
        """Enqueue `msg`; the job id. Options as MLQ.post's."""
        request = checked_post(self, msg, callback, functions, **options)
        keys, args = self.steps.post_call(request.queue, request.fields, request.priority,
                                          request.owner, request.token, request.lifecycle)
        try:
            reply = await self._step("post", keys, args, request.replicas)
        except redis.ResponseError as exc:
            check_dependencies_known(exc)
            raise
        return posted(reply).id

    async def post_many(self, msgs: Iterable[Any], callback: str | None = None,
                        functions: list[str] | None = None, **options: Any) -> list[str]:
        """Enqueue many messages, one step per chunk; their ids in order. Options as
        MLQ.post_many's; a bad message posts none."""
        request = checked_many(self, msgs, callback, functions, **options)
        ids: list[str] = []
        for chunk in request.chunks:
            keys, args = self.steps.post_many_call(request.queue, chunk, request.priority,
                                                   request.owner, request.lifecycle)
            ids += id_range(await self._step("post_many", keys, args, request.replicas))
        if request.then is not None:
            then = dict(request.then)
            ids.append(await self.post(then.pop("msg"), depends_on=ids, **then))
        return ids

    async def cancel(self, job_id: str | int) -> bool:
        """Cancel a waiting job (it never runs), or ask a running one to stop; False
        once it has ended. JobNotFound for an unknown id."""
        job_id = _check_id(job_id)
        placed = await self.get_job(job_id, fields=["queue", "priority", "owner"])
        keys, args = self.steps.cancel_call(job_id, placed["queue"] or DEFAULT_QUEUE,
                                            time.time(), placed["priority"] or 0,
                                            placed["owner"])
        return int(await self._step("cancel", keys, args)) > 0

    async def _step(self, name: str, keys: list[Any], args: list[Any], replicas: int = 0) -> Any:
        """A Lua step's reply; with `replicas`, once that many replicas hold what it
        wrote (WAIT on the same connection, as Scripts does)."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.client.register_script(script_source(name))
        if not replicas:
            return await script(keys=keys, args=args)
        async with self.client.pipeline(transaction=False) as pipe:
            await script(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", replicas, int(defaults.REPLICAS_TIMEOUT * 1000))
            reply, reached = await pipe.execute()
        return replicated(name, reply, reached, replicas)

    # -- reading -----------------------------------------------------------------
    async def get_job(self, job_id: str | int, *,
                      fields: list[str] | None = None) -> dict[str, Any]:
        """The job's record, as MLQ.get_job gives it (with `position` and `eta_s`);
        JobNotFound for an unknown id."""
        job_id = _check_id(job_id)
        return await replayed(self.client, lambda client: read_job(
            _Reader(client, self.keys), job_id, fields))

    get_result = get_job

    async def job_count(self, queue: str = DEFAULT_QUEUE) -> int:
        """Jobs waiting in `queue`, over every priority and owner."""
        return await replayed(self.client, lambda client: Listing(client, self.keys).job_count(queue))

    async def wait(self, job_id: str | int, timeout: float | None = None) -> dict[str, Any]:
        """The job's record once it has ended (pushed by Redis); TimeoutError when
        `timeout` seconds pass first."""
        job_id = _check_id(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float:
            if deadline is None:
                return RECHECK_INTERVAL
            if deadline <= time.monotonic():
                raise TimeoutError(f"job {job_id} not finished within {timeout} s")
            return min(RECHECK_INTERVAL, deadline - time.monotonic())

        with self.events.waiting(job_id) as inbox:
            try:
                await asyncio.wait_for(self.events.subscribed(), None if deadline is None
                                       else max(deadline - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                raise TimeoutError(f"job {job_id} not finished within {timeout} s") from None
            while True:
                record = await self._ended(job_id)
                if record is not None:
                    return record
                quiet_for = left()  # outside the try: its TimeoutError is the caller's
                try:
                    event = await asyncio.wait_for(inbox.get(), quiet_for)
                except asyncio.TimeoutError:
                    continue  # quiet for a while: read the job again, in case an event was lost
                if event is not None:
                    record = await self._event_record(job_id, event)
                    # (an earlier run's outcome read only after a requeue: the record tells)
                    if record["status"] in TERMINAL:
                        return record

    async def _ended(self, job_id: str) -> dict[str, Any] | None:
        """The record of an ended job, or None while it has not ended; its status is
        read first, as MLQ.wait does, to leave a large record alone until then, and
        the job marked waited for (await.lua), so its finish sends the record along."""
        reply = await self._step("await", [self.keys.job(job_id)], [])
        if reply is None:
            raise JobNotFound(f"no job {job_id!r}")
        status, record = first_look(reply)
        if status not in TERMINAL:
            return None
        if record is not None:
            return await self._kept_apart(job_id, record)
        record = await self.get_job(job_id)
        return record if record["status"] in TERMINAL else None

    async def _event_record(self, job_id: str, event: bytes) -> dict[str, Any]:
        record = event_record(event)
        if record is None:
            return await self.get_job(job_id)
        return await self._kept_apart(job_id, record)

    async def _kept_apart(self, job_id: str, record: dict[str, Any]) -> dict[str, Any]:
        # the record an event or a first look carries is small: a big result is only
        # marked in it
        return await replayed(self.client, lambda client: with_result_kept_apart(
            client, self.keys, job_id, dict(record)))

    async def stream(self, job_id: str | int, after: str = "0-0"
                     ) -> AsyncIterator[tuple[str, Any]]:
        """(entry id, chunk) of the job's streamed output after entry `after`, as it
        comes, until the job ends; resume after the last id seen (streams.entries
        does the same for MLQ)."""
        job_id = _check_id(job_id)
        key = self.keys.stream(job_id)
        with self.events.reading(job_id) as inbox:
            await self.events.subscribed()
            ended = False
            while True:
                while not inbox.empty():  # what the read below covers
                    inbox.get_nowait()
                entries = await self.client.xrange(key, min=f"({after}", max="+",
                                                   count=READ_COUNT)
                for entry_id, fields in entries:
                    if b"end" in fields:  # the finish wrote the job's status
                        return
                    after = entry_id.decode()
                    yield after, unpack(fields[b"c"])
                if len(entries) == READ_COUNT:
                    continue
                if not entries:
                    if ended:  # read once more after the status was final: all there
                        return
                    ended = await self._ended(job_id) is not None
                    if ended:
                        continue
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(inbox.get(), READ_WAIT)

    # -- closing -----------------------------------------------------------------
    async def close(self) -> None:
        """Stop the event subscription; close the client unless it was handed in."""
        await self.events.close()
        if self._own_client:
            await self.client.aclose()

    async def __aenter__(self) -> AsyncMLQ:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncMLQ({self.namespace!r})"
