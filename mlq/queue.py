"""The MLQ facade (SPEC §2): what producers, listeners and the server call."""

from __future__ import annotations

import logging
import pickle
import secrets
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Iterator, Sequence

import redis

from . import defaults
from .callbacks import CallbackSender, check_callback_url
from .connection import connect, heartbeat_client
from .errors import InvalidMessage, JobFailed, JobNotFound
from .events import wait_for_terminal, watch
from .job import FAILED, QUEUED, RUNTIME_BUCKETS, STARTED, STATUSES, bucket_field, progress_text
from .keys import DEFAULT_QUEUE, PRIORITIES, Keys, check_function_name, check_name
from .notebook import Job, submit_many
from .listeners import Listener, ListenerStates, Registry, Upload, function_name, listener
from .scripts import Scripts
from .record import RECORD_FIELDS, STORED_RESULT, failed, record_from_hash
from .serialization import apart_value, pack, pack_fields, unpack

log = logging.getLogger("mlq")


def _check_id(job_id: Any) -> str:
    text = str(job_id)
    if not text.isdigit() or not text.isascii() or len(text) > 20:
        raise JobNotFound(f"no job {text!r}")
    return str(int(text))


def _check_priority(priority: Any) -> int:
    if isinstance(priority, float) and priority.is_integer():
        priority = int(priority)  # JSON may spell 2 as 2.0
    if isinstance(priority, bool) or not isinstance(priority, int) or priority not in PRIORITIES:
        raise InvalidMessage(f"priority must be an integer from {PRIORITIES[0]} to {PRIORITIES[-1]}")
    return priority


def _check_replicas(replicas: Any) -> int:
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise InvalidMessage("replicas must be a whole number, 0 or more")
    return replicas


class MLQ:
    """A namespace of jobs in Redis: post, inspect, consume."""

    def __init__(self, q_name: str, redis_host: str = "localhost", redis_port: int = 6379,
                 redis_db: int = 0, *, redis_url: str | None = None,
                 client: redis.Redis | None = None, secret: str | bytes | None = None,
                 concurrency: int = defaults.CONCURRENCY,
                 heartbeat_interval: float = defaults.HEARTBEAT_INTERVAL,
                 heartbeat_timeout: float = defaults.HEARTBEAT_TIMEOUT,
                 max_retries: int = defaults.MAX_RETRIES,
                 callback_timeout: float = defaults.CALLBACK_TIMEOUT,
                 callback_allow_hosts: Sequence[str] | None = None,
                 callback_allow_link_local: bool = False,
                 max_message_size: int = defaults.MAX_MESSAGE_SIZE,
                 max_result_size: int = defaults.MAX_RESULT_SIZE,
                 max_function_size: int = defaults.MAX_FUNCTION_SIZE,
                 result_ttl: float | None = defaults.RESULT_TTL,
                 queues: Sequence[str] = (DEFAULT_QUEUE,), fair: bool = False,
                 max_running_per_owner: int = 0, min_replicas: int = 0) -> None:
        self.namespace = check_name("namespace", q_name)
        self.keys = Keys(q_name)
        self.client = client or connect(redis_url, redis_host, redis_port, redis_db,
                                        slot_key=self.keys.prefix)
        self._server = None if client else (redis_url, redis_host, redis_port, redis_db)
        self._heartbeat_client: redis.Redis | None = None
        self._heartbeat_lock = threading.Lock()
        self.scripts = Scripts(self.client, self.keys)
        self.secret = secret
        self.registry = Registry(self.client, self.keys, self.scripts, secret,
                                 max_function_size=max_function_size)
        self.callbacks = CallbackSender(timeout=callback_timeout, secret=secret,
                                        allow_hosts=callback_allow_hosts,
                                        allow_link_local=callback_allow_link_local)
        #: replicas every post waits for unless it asks otherwise (see post)
        self.min_replicas = _check_replicas(min_replicas)
        self.max_message_size = max_message_size
        self.max_result_size = max_result_size
        if result_ttl is not None and not result_ttl > 0:
            raise InvalidMessage("result_ttl must be a positive number of seconds")
        self.result_ttl = result_ttl
        #: what this object's workers consume: queues in order of preference, and
        #: whether owners' jobs are shared round-robin (with a per-owner limit)
        self.queues = tuple(check_name("queue", queue) for queue in queues)
        self.fair = fair
        self.max_running_per_owner = max_running_per_owner
        self.concurrency = concurrency
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_retries = max_retries
        self._consumer: Any = None
        #: listeners only this process runs (create_listener with an unpicklable function)
        self.local_listeners: dict[str, Listener] = {}
        #: setup() results of listeners in this process (mlq.listener(setup=...))
        self.listener_states = ListenerStates()
        self._reaper_stop: threading.Event | None = None
        self._reaper_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- producing ----------------------------------------------------------
    def post(self, msg: Any, callback: str | None = None, functions: list[str] | None = None,
             *, timeout: float | None = None, queue: str = DEFAULT_QUEUE,
             priority: int = 0, owner: str | None = None, replicas: int | None = None) -> str:
        """Enqueue `msg`; returns the job id (a decimal string).

        `queue` names the queue (workers choose theirs); `priority` 0–9, higher
        first, FIFO within a priority. `owner` (a user or team) shares a busy
        queue fairly: workers started with fair=True take owners' jobs round-robin
        (a job with a priority above 0 jumps that round-robin).
        `replicas`: return only once that many replicas hold the job (Redis WAIT),
        so a failover cannot lose it; NotReplicated when they do not confirm it
        within defaults.REPLICAS_TIMEOUT. Default: `min_replicas`.
        """
        priority = _check_priority(priority)
        replicas = self.min_replicas if replicas is None else _check_replicas(replicas)
        fields = self._new_record(msg, callback, functions, timeout, queue, priority, owner)
        return str(self.scripts.post(queue, fields, priority=priority, owner=owner,
                                     replicas=replicas))

    def submit(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
        """Run `function(*args, **kwargs)` on a worker; the function travels with the job."""
        return submit_many(self, function, [(args, kwargs)])[0]

    def map(self, function: Callable[..., Any], items: Iterable[Any],
            timeout: float | None = None) -> list[Any]:
        """`[function(item) for item in items]`, run on the workers; results in order."""
        jobs = submit_many(self, function, [((item,), {}) for item in items])
        return [job.result(timeout) for job in jobs]

    def job(self, job_id: str | int) -> Job:
        """A handle on an existing job."""
        job_id = _check_id(job_id)
        self.get_job(job_id)
        return Job(self, job_id)

    def cancel(self, job_id: str | int) -> bool:
        """Cancel a queued job, or stop a running one; False once it has finished."""
        job_id = _check_id(job_id)
        self._field(job_id, "status")  # JobNotFound for an unknown id
        queue, priority, owner = self._placement(job_id)
        return int(self.scripts.cancel(job_id, queue, time.time(), priority, owner)) > 0

    def post_many(self, msgs: Iterable[Any], callback: str | None = None,
                  functions: list[str] | None = None, *, timeout: float | None = None,
                  queue: str = DEFAULT_QUEUE, priority: int = 0, owner: str | None = None,
                  chunk_size: int = 500, extra: dict[str, Any] | None = None,
                  replicas: int | None = None) -> list[str]:
        """Enqueue many messages, one step (one round trip) per chunk; returns their
        ids in order, consecutive within a chunk.

        Every message is checked before anything is sent, so a bad one posts none.
        """
        priority = _check_priority(priority)
        replicas = self.min_replicas if replicas is None else _check_replicas(replicas)
        records = [self._new_record(m, callback, functions, timeout, queue, priority, owner)
                   for m in msgs]
        if extra:
            records = [fields + pack_fields(extra) for fields in records]
        ids: list[str] = []
        for start in range(0, len(records), chunk_size):
            ids += self.scripts.post_many(queue, records[start:start + chunk_size],
                                          priority, owner, replicas)
        return ids

    def _new_record(self, msg: Any, callback: Any, functions: Any, timeout: Any,
                    queue: Any, priority: Any = 0, owner: Any = None) -> list[Any]:
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
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
                raise InvalidMessage("timeout must be a positive number of seconds")
            if timeout == float("inf"):
                raise InvalidMessage("timeout must be finite")
        check_name("queue", queue)
        if owner is not None:
            check_name("owner", owner)
        packed_msg = pack(msg)
        if len(packed_msg) > self.max_message_size:
            raise InvalidMessage(f"message of {len(packed_msg)} bytes exceeds the limit of "
                                 f"{self.max_message_size} bytes")
        # the fields every new record starts with (status queued ...) are set by the post step
        # link_salt: what ties a signed result link to this job and no later one
        return ["timestamp", pack(time.time()), "link_salt", pack(secrets.token_hex(8)),
                "callback", pack(callback),
                "functions", pack(functions), "timeout", pack(timeout), "queue", pack(queue),
                "priority", pack(priority), "owner", pack(owner), "msg", packed_msg]

    # -- reading ------------------------------------------------------------
    def get_job(self, job_id: str | int, *,
                fields: Sequence[str] | None = None) -> dict[str, Any]:
        """The job's record (SPEC §4); JobNotFound for an unknown id.

        `fields`: only these keys (and `id`), e.g. to check a status without
        loading a large msg or result.
        """
        checked = _check_id(job_id)
        key = self.keys.job(checked)
        if fields is None:
            raw = self.client.hgetall(key)
            if not raw:
                raise JobNotFound(f"no job {str(job_id)!r}")
            return self._with_result_kept_apart(checked, record_from_hash(raw))
        names = ["id", *(f for f in fields if f != "id")]
        if "result" in names and STORED_RESULT not in names:
            names.append(STORED_RESULT)
        values = self.client.hmget(key, names)
        if values[0] is None:
            raise JobNotFound(f"no job {str(job_id)!r}")
        record = {name: unpack(value) for name, value in zip(names, values)}
        return self._with_result_kept_apart(checked, record) if "result" in record else record

    def _with_result_kept_apart(self, job_id: str, record: dict[str, Any]) -> dict[str, Any]:
        """`record` with a big result kept in its own key (STORED_RESULT) read back in."""
        marker = record.pop(STORED_RESULT, None)
        if not marker:
            return record
        data = self.client.get(self.keys.result(job_id))
        if data is None:  # the record expired or was purged since it was read
            raise JobNotFound(f"no job {job_id!r}")
        record["result"] = apart_value(data, marker)
        return record

    get_result = get_job

    def get_progress(self, job_id: str | int) -> str:
        return progress_text(self._field(job_id, "progress"))

    def _field(self, job_id: str | int, name: str) -> Any:
        job_id = _check_id(job_id)
        key = self.keys.job(job_id)
        value = self.client.hget(key, name)
        # every stored value is msgpack (None too): no value means no field, and
        # only then is it worth asking whether the job exists at all
        if value is None and not self.client.exists(key):
            raise JobNotFound(f"no job {job_id!r}")
        return unpack(value)

    def wait(self, job_id: str | int, timeout: float | None = None) -> dict[str, Any]:
        """Block (pushed by Redis) until the job completed or failed; its record."""
        job_id = _check_id(job_id)
        record = wait_for_terminal(self.client, self.keys, job_id,
                                   lambda: self.get_job(job_id), timeout,
                                   read_status=lambda: self._field(job_id, "status"))
        # the record an event carries is small: a big result is only marked in it
        return self._with_result_kept_apart(job_id, record)

    def block_until_result(self, job_id: str | int, timeout: float | None = None) -> Any:
        """The job's result once completed; JobFailed if it failed."""
        record = self.wait(job_id, timeout)
        if record["status"] == FAILED:
            raise JobFailed(f"job {record['id']} failed: {record['result']}", record)
        return record["result"]

    def watch(self, job_id: str | int, keepalive: float = 15.0) -> Iterator[dict[str, Any] | None]:
        """The job's state now, then each change; None when `keepalive` passes quietly."""
        job_id = _check_id(job_id)
        self.get_job(job_id)
        return watch(self.client, self.keys, job_id, lambda: self.get_job(job_id), keepalive)

    def job_count(self, queue: str = DEFAULT_QUEUE) -> int:
        """Jobs waiting to be taken."""
        check_name("queue", queue)
        owners = [o.decode() for o in self.client.lrange(self.keys.owners(queue), 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for lane in self.keys.lanes(queue) + [self.keys.owned(queue, o) for o in owners]:
            pipe.llen(lane)
        return sum(int(n) for n in pipe.execute())

    def queue_names(self) -> list[str]:
        return sorted(q.decode() for q in self.client.smembers(self.keys.queues)) or [DEFAULT_QUEUE]

    def stats(self) -> dict[str, Any]:
        """Counts and counters shared by every process (for status and metrics)."""
        queues = self.queue_names()
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(self.keys.running)
        pipe.llen(self.keys.dead)
        pipe.hgetall(self.keys.stats)
        pipe.get(self.keys.counter)
        processing, dead, raw, ids = pipe.execute()
        waiting = {queue: self.job_count(queue) for queue in queues}
        counters = {k.decode(): v.decode() for k, v in raw.items()}
        buckets = [(b, int(counters.get(bucket_field(b), 0))) for b in RUNTIME_BUCKETS]
        return {
            "waiting": sum(waiting.values()), "waiting_by_queue": waiting,
            "processing": int(processing), "dead": int(dead),
            "posted": int(ids or 0),  # each post takes the next id, and only posts do
            "completed": int(counters.get("completed", 0)),
            "failed": int(counters.get("failed", 0)),
            "requeued": int(counters.get("requeued", 0)),
            "runtime_buckets": buckets,
            "runtime_sum": float(counters.get("runtime_sum", 0.0)),
        }

    @property
    def heartbeat_client(self) -> redis.Redis:
        """The client heartbeats go through: connections of their own, so a heartbeat
        never waits behind a hung socket of the jobs' traffic (the given client's,
        when this MLQ was handed one)."""
        if self._server is None:
            return self.client
        with self._heartbeat_lock:  # not self._lock: held while consumers start
            if self._heartbeat_client is None:
                self._heartbeat_client = heartbeat_client(*self._server, slot_key=self.keys.prefix)
            return self._heartbeat_client

    def ping(self) -> bool:
        return bool(self.client.ping())

    # -- listeners ----------------------------------------------------------
    def create_listener(self, function: Listener | dict | bytes | None = None, *,
                        concurrency: int | None = None, batch_size: int | None = None,
                        batch_wait: float = 0.0) -> str | None:
        """Register `function` for the whole namespace and consume in background threads.

        A function that cannot be pickled (it holds a lock, a socket...) still runs
        here, in this process only, with a warning.
        """
        name = None
        if batch_size is not None and callable(function):
            function = listener(function, batch_size=batch_size, batch_wait=batch_wait)
        if function is not None:
            try:
                name = self.registry.register(function)
            except (TypeError, AttributeError, pickle.PicklingError) as exc:
                if not callable(function):
                    raise
                name = function_name(function)
                self.local_listeners[name] = function
                log.warning("listener %r cannot be shared through Redis (%s); it runs in "
                            "this process only", name, exc)
        with self._lock:
            if self._consumer is None:
                from .consumer import ThreadConsumer
                self._consumer = ThreadConsumer(self, concurrency or self.concurrency)
                self._consumer.start()
        return name

    def register_listener(self, function: Listener | dict | bytes) -> str:
        """Register without consuming here, signed with this object's secret if it has one."""
        return self.registry.register(function)

    def store_upload(self, upload: Upload, name: str) -> str:
        """Register code uploaded by someone else (POST /consumer), never unpickling it.

        With a secret set, the upload must carry its uploader's valid signature:
        SignatureError otherwise, and nothing is stored.
        """
        return self.registry.store_upload(upload, name)

    def remove_listener(self, function: Listener | str | dict | bytes) -> bool:
        return self.registry.unregister(function)

    def listener_names(self) -> list[str]:
        return self.registry.names()

    def listener_context(self, record: dict[str, Any], worker: Any) -> dict[str, Any]:
        """The dict a listener gets as args[0] (SPEC §3)."""
        job_id, attempt = record["id"], record["attempt"]
        return {
            "full_message": record,
            "update_progress": lambda value: worker.update_progress(job_id, attempt, value),
            "store_data": self.store_data,
            "fetch_data": self.fetch_data,
            "post": self.post,
            "block_until_result": self.block_until_result,
        }

    # -- data ---------------------------------------------------------------
    def store_data(self, data: str | bytes, key: str | None = None,
                   expiry: float | None = None) -> str:
        if not isinstance(data, (str, bytes, bytearray)):
            raise InvalidMessage("store_data takes str or bytes")
        key = key or uuid.uuid4().hex
        px = None if expiry is None else max(int(expiry * 1000), 1)
        self.client.set(self.keys.data(key), data, px=px)
        return key

    def fetch_data(self, key: str) -> bytes | None:
        return self.client.get(self.keys.data(key))

    # -- recovery and dead letters -------------------------------------------
    def recover_job(self, job_id: str, worker_id: str, max_retries: int, now: float,
                    reason: str) -> int:
        """Take a job back from a worker: 1 requeued, 2 failed, 0/3 nothing to report."""
        queue, priority, owner = self._placement(job_id)
        code = int(self.scripts.requeue(job_id, worker_id, queue, max_retries, now, reason,
                                        priority, owner))
        if code == 2:
            self._failure_callback(job_id)
        return code

    def _failure_callback(self, job_id: str) -> None:
        callback = unpack(self.client.hget(self.keys.job(job_id), "callback"))
        if callback:
            self.callbacks.send(callback, False, job_id, None)

    def fail_job(self, job_id: str, worker_id: str, attempt: int, reason: str,
                 now: float | None = None, error_kind: str | None = None) -> bool:
        """Fail a running attempt from outside it (time limit, OOM); fenced like a finish."""
        now = time.time() if now is None else now
        fields = failed(reason, kind=error_kind)
        done = bool(self.scripts.finish(job_id, worker_id, attempt, FAILED, now, fields,
                                        ttl=self.result_ttl))
        if done:
            self._failure_callback(job_id)
        return done

    def list_jobs(self, status: str | None = None, queue: str | None = None, offset: int = 0,
                  limit: int = 50) -> tuple[int, list[dict[str, Any]]]:
        """(how many match, one page of their records newest first, without `result`).

        Pages come from Redis sorted sets and lists, so no listing loads every job:
        queued jobs are read from their queues' lists, started ones from the
        running set, finished ones from per-status indexes.
        """
        if status is not None and status not in STATUSES:
            raise InvalidMessage(f"status must be one of {', '.join(STATUSES)}")
        offset, limit = max(int(offset), 0), min(max(int(limit), 1), 500)
        if status == QUEUED:
            total, ids = self._queued_page(queue, offset, limit)
        else:
            total, ids = self._index_page(status, queue, offset, limit)
        fields = [f for f in RECORD_FIELDS if f != "result"]
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), fields)
        records = []
        for values in (pipe.execute() if ids else []):
            if values[0] is None:
                continue  # expired (result TTL) or purged meanwhile
            records.append({f: unpack(v) for f, v in zip(fields, values)})
        return total, records

    def _index_page(self, status: str | None, queue: str | None, offset: int,
                    limit: int) -> tuple[int, list[str]]:
        if status == STARTED:
            keys = [self.keys.running]
        else:
            keys = [self.keys.index_status(status)] if status else [self.keys.index_all]
        if queue:
            keys.append(self.keys.index_queue(queue))
        if len(keys) == 1:
            index = keys[0]
        else:  # status and queue: intersect into a short-lived key of the namespace
            index = self.keys.prefix + f"index:tmp:{uuid.uuid4().hex}"
            pipe = self.client.pipeline(transaction=True)
            # MAX keeps the first set's order: start times (running) exceed ids
            pipe.zinterstore(index, keys, aggregate="MAX")
            pipe.expire(index, 30)
            pipe.execute()
        try:
            total = int(self.client.zcard(index))
            ids = [i.decode() for i in self.client.zrevrange(index, offset, offset + limit - 1)]
        finally:
            if index not in keys:
                self.client.delete(index)
        return total, ids

    def _queued_page(self, queue: str | None, offset: int, limit: int) -> tuple[int, list[str]]:
        """Queued ids, newest first, from the queues' lists (each newest at its head)."""
        names = [queue] if queue else self.queue_names()
        lanes = [lane for name in names for lane in self.keys.lanes(name)]
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.lrange(self.keys.owners(name), 0, -1)
        for name, owners in zip(names, pipe.execute()):
            lanes += [self.keys.owned(name, owner.decode()) for owner in owners]
        pipe = self.client.pipeline(transaction=False)
        for lane in lanes:
            pipe.llen(lane)
        lengths = pipe.execute()
        total = sum(lengths)
        held = [lane for lane, length in zip(lanes, lengths) if length]
        if len(held) == 1:
            page = self.client.lrange(held[0], offset, offset + limit - 1)
            return total, [i.decode() for i in page]
        pipe = self.client.pipeline(transaction=False)
        for lane in held:
            pipe.lrange(lane, 0, offset + limit - 1)
        ids = sorted({int(i) for page in pipe.execute() for i in page}, reverse=True)
        return total, [str(i) for i in ids[offset:offset + limit]]

    def _placement(self, job_id: str) -> tuple[str, int, str | None]:
        """The queue, priority and owner of a job: where it waits when it goes back."""
        queue, priority, owner = self.client.hmget(self.keys.job(job_id),
                                                   ["queue", "priority", "owner"])
        return unpack(queue) or DEFAULT_QUEUE, unpack(priority) or 0, unpack(owner)

    def dead_letters(self) -> list[dict[str, Any]]:
        ids = [i.decode() for i in self.client.lrange(self.keys.dead, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(self.keys.job(job_id))
        return [record_from_hash(raw) for raw in (pipe.execute() if ids else []) if raw]

    def requeue_dead(self, job_id: str | int | None = None) -> int:
        """Requeue one dead letter, or all of them. All: the set is claimed in one
        atomic step, so requeues of all running at once share it out, and a job that
        fails again at once stays dead rather than being requeued twice."""
        if job_id is not None:
            one = _check_id(job_id)
            if not int(self.scripts.requeue_dead(one, *self._placement(one))):
                raise JobNotFound(f"job {job_id!r} is not a dead letter")
            return 1
        return self._for_each_claimed(
            lambda one, claim: int(self.scripts.requeue_dead(one, *self._placement(one),
                                                             dead=claim)))

    def purge_dead(self, job_id: str | int | None = None) -> int:
        """Delete one dead letter, or all of them (claimed as for requeue_dead)."""
        if job_id is not None:
            one = _check_id(job_id)
            if not int(self.scripts.purge_dead(one, self._placement(one)[0])):
                raise JobNotFound(f"job {job_id!r} is not a dead letter")
            return 1
        return self._for_each_claimed(
            lambda one, claim: int(self.scripts.purge_dead(one, self._placement(one)[0],
                                                           dead=claim)))

    def _for_each_claimed(self, act: Callable[[str, str], int]) -> int:
        token = uuid.uuid4().hex
        now = time.time()
        ids = self.scripts.claim_dead(token, now, now - defaults.DEAD_CLAIM_ABANDONED)
        claim = self.keys.dead_claim(token)
        count = 0
        for done, one in enumerate(ids, 1):
            count += act(one, claim)
            if done % 100 == 0:  # still alive: nobody folds this claim back
                self.client.zadd(self.keys.dead_claims, {token: time.time()})
        self.client.delete(claim)
        self.client.zrem(self.keys.dead_claims, token)
        return count

    def clear_all(self) -> int:
        """Delete every key of this namespace and nothing else; returns how many."""
        deleted = 0
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=self.keys.pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += self.client.delete(*batch)
                batch = []
        if batch:
            deleted += self.client.delete(*batch)
        return deleted

    # -- reaper and stopping ---------------------------------------------------
    def create_reaper(self, call_how_often: float = defaults.REAPER_INTERVAL,
                      job_timeout: float = defaults.REAPER_JOB_TIMEOUT,
                      max_retries: int = defaults.MAX_RETRIES) -> Any:
        """Run the reaper (SPEC §6) in a background thread; returns the Reaper."""
        from .reaper import Reaper
        reaper = Reaper(self, job_timeout=job_timeout, max_retries=max_retries)
        with self._lock:
            if self._reaper_thread is None:
                self._reaper_stop = threading.Event()
                self._reaper_thread = threading.Thread(
                    target=reaper.run, args=(self._reaper_stop, call_how_often),
                    name="mlq-reaper", daemon=True)
                self._reaper_thread.start()
        return reaper

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop consuming: running jobs finish, no new ones are taken. Any thread may call it."""
        with self._lock:
            consumer, self._consumer = self._consumer, None
            reaper_stop, reaper_thread = self._reaper_stop, self._reaper_thread
            self._reaper_stop = self._reaper_thread = None
        if reaper_stop is not None:
            reaper_stop.set()
        if consumer is not None:
            consumer.stop(timeout)
            self.listener_states.teardown_all()
        if reaper_thread is not None and reaper_thread is not threading.current_thread():
            reaper_thread.join(timeout)
        self.callbacks.close(wait=True)

    def close(self) -> None:
        """Stop consuming (see shutdown), then close this object's Redis connections."""
        self.shutdown()
        self.scripts.round_trips.close()
        self.client.close()
        if self._heartbeat_client is not None:
            self._heartbeat_client.close()

    def __enter__(self) -> MLQ:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MLQ({self.namespace!r})"


