"""The MLQ facade (SPEC §2): what producers, listeners and the server call."""

from __future__ import annotations

import logging
import pickle
import threading
import time
import uuid
from typing import Any, Callable, Iterable, Iterator, Sequence

import redis

from . import defaults, streams
from .callbacks import CallbackSender
from .connection import Clients
from .errors import InvalidMessage, JobFailed
from .events import OwnPosts, wait_for_terminal, watch
from .job import COMPLETED, progress_text
from .keys import DEFAULT_QUEUE, Keys, check_name
from .keys import check_job_id as _check_id
from .listeners import Listener, ListenerStates, Registry, function_name, listener
from .listing import Listing
from .notebook import Job, job_options, submit_many
from .control import Control
from .posting import Posted, check_replicas, enqueue, post_many
from .position import read_job
from .record import read_field, with_result_kept_apart
from .schedules import Schedules
from .recovery import Recovery
from .scripts import Scripts
from .uploads import Upload

log = logging.getLogger("mlq")


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
                 max_running_per_owner: int = 0, min_replicas: int = 0,
                 stream_max: int = streams.STREAM_MAX) -> None:
        self.namespace = check_name("namespace", q_name)
        self.keys = Keys(q_name)
        self.clients = Clients(client, redis_url, redis_host, redis_port, redis_db,
                               slot_key=self.keys.prefix)
        self.client = self.clients.main
        self.scripts = Scripts(self.client, self.keys)
        self.listing = Listing(self.client, self.keys, self.scripts)
        self.own_posts = OwnPosts(self.client, self.keys)
        self.recovery, self.control, self.schedules_store = Recovery(self), Control(self), Schedules(self)
        self.secret = secret
        self.registry = Registry(self.client, self.keys, self.scripts, secret,
                                 max_function_size=max_function_size)
        self.callbacks = CallbackSender(timeout=callback_timeout, secret=secret,
                                        allow_hosts=callback_allow_hosts,
                                        allow_link_local=callback_allow_link_local)
        self._set_limits(max_message_size, max_result_size, result_ttl, min_replicas, stream_max)
        #: what this object's workers consume: queues in order of preference, and
        #: whether owners' jobs are shared round-robin (with a per-owner limit)
        self.queues = tuple(check_name("queue", queue) for queue in queues)
        self.fair = fair
        self.max_running_per_owner = max_running_per_owner
        self.concurrency = concurrency
        self.heartbeat_interval, self.heartbeat_timeout = heartbeat_interval, heartbeat_timeout
        self.max_retries = max_retries
        self._consumer: Any = None
        #: listeners only this process runs (create_listener with an unpicklable function)
        self.local_listeners: dict[str, Listener] = {}
        #: setup() results of listeners in this process (mlq.listener(setup=...))
        self.listener_states = ListenerStates()
        self._reaper_stop: threading.Event | None = None
        self._reaper_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _set_limits(self, max_message_size: int, max_result_size: int,
                    result_ttl: float | None, min_replicas: int, stream_max: int) -> None:
        self.max_message_size, self.max_result_size = max_message_size, max_result_size
        self.stream_max = streams.checked_max(stream_max)  # entries a job's stream keeps
        if result_ttl is not None and not result_ttl > 0:
            raise InvalidMessage("result_ttl must be a positive number of seconds")
        self.result_ttl = result_ttl
        #: replicas every post waits for unless it asks otherwise (see post)
        self.min_replicas = check_replicas(min_replicas)

    # -- producing (posting.py) --------------------------------------------------
    def post(self, msg: Any, callback: str | None = None, functions: list[str] | None = None,
             **options: Any) -> str:
        """Enqueue `msg`; returns the job id (a decimal string).

        Options (keywords; docs/lifecycle.md has the whole contract): `queue`;
        `priority` 0–9, higher first; `owner` shares a busy queue fairly (fair
        workers); `timeout` seconds an attempt may run; `delay` seconds or `at`
        (epoch seconds, datetime or ISO 8601): scheduled until then; `expires`
        seconds: not started by then, it never runs; `retries`, `backoff`,
        `backoff_max`, `retry_on`: attempts after an exception (full-jitter
        backoff); `key` (and `key_ttl`): posting it again while its job lives
        returns that job's id; `depends_on` ids: deferred until they completed;
        `replicas`: return once that many replicas hold it (NotReplicated
        otherwise; default `min_replicas`); `token`: the same token posted again
        within 5 minutes returns the first post's id.
        """
        return enqueue(self, msg, callback, functions, **options).id

    def enqueue(self, msg: Any, callback: str | None = None, functions: list[str] | None = None,
                **options: Any) -> Posted:
        """post, saying whether the dedup key found a live job (then none was made)."""
        return enqueue(self, msg, callback, functions, **options)

    def submit(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job:
        """Run `function(*args, **kwargs)` on a worker (code and all); job options: options()."""
        return submit_many(self, function, [(args, kwargs)])[0]

    def map(self, function: Callable[..., Any], items: Iterable[Any],
            timeout: float | None = None) -> list[Any]:
        """`[function(item) for item in items]`, run on the workers; results in order."""
        jobs = submit_many(self, function, [((item,), {}) for item in items])
        return [job.result(timeout) for job in jobs]

    options = job_options  # q.options(queue="gpu").submit(...): notebook.Options

    def job(self, job_id: str | int) -> Job:
        """A handle on an existing job."""
        job_id = _check_id(job_id)
        self.get_job(job_id)
        return Job(self, job_id)

    def cancel(self, job_id: str | int) -> bool:
        """Cancel a waiting job (it never runs), or ask a running one to stop (its
        listener's cancelled() turns True); False once it has ended."""
        job_id = _check_id(job_id)
        read_field(self.client, self.keys, job_id, "status")  # JobNotFound for an unknown id
        queue, priority, owner = self.recovery.placement(job_id)
        return int(self.scripts.cancel(job_id, queue, time.time(), priority, owner)) > 0

    def cancel_many(self, ids: Iterable[str | int] | None = None,
                    queue: str | None = None) -> list[str]:
        """Cancel these jobs, or every waiting and running job of `queue`; the ids
        cancelled or asked to stop (unknown and ended ones are left out)."""
        return self.control.cancel_many(ids, queue)

    # -- queues (control.py) ---------------------------------------------------
    def pause(self, queue: str) -> None:
        """Workers take nothing from `queue` until resume(); posts are still accepted."""
        self.control.pause(queue)

    def resume(self, queue: str) -> None:
        self.control.resume(queue)

    def paused(self) -> list[str]:  # sorted
        return self.control.paused()

    # -- periodic jobs (schedules.py) --------------------------------------------
    def schedule(self, name: str, cron: str, msg: Any, **options: Any) -> dict[str, Any]:
        """Post `msg` at every time the cron expression names (any worker fires
        it, once per time); options: queue, functions, timezone, priority, timeout."""
        return self.schedules_store.add(name, cron, msg, **options)

    def unschedule(self, name: str) -> bool:
        return self.schedules_store.remove(name)

    def schedules(self) -> list[dict[str, Any]]:
        return self.schedules_store.list()

    def post_many(self, msgs: Iterable[Any], callback: str | None = None,
                  functions: list[str] | None = None, **options: Any) -> list[str]:
        """Enqueue many messages, one step (one round trip) per chunk (`chunk_size`,
        default 500); returns their ids in order, consecutive within a chunk.
        Options as post's but key and depends_on; `then` (a dict with "msg" and
        post options) adds a job that waits for all of them, its id last.

        Every message is checked before anything is sent, so a bad one posts none.
        """
        return post_many(self, msgs, callback, functions, **options)

    # -- reading ------------------------------------------------------------
    def get_job(self, job_id: str | int, *,
                fields: Sequence[str] | None = None) -> dict[str, Any]:
        """The job's record (SPEC §4) with `position` and `eta_s` (position.py);
        JobNotFound for an unknown id.

        `fields`: only these keys (and `id`); `position` and `eta_s` too if named."""
        return read_job(self, _check_id(job_id), fields)

    get_result = get_job

    def get_progress(self, job_id: str | int) -> str:
        record = self.get_job(job_id, fields=["progress", "status"])
        return progress_text(record["progress"], record["status"])

    def wait(self, job_id: str | int, timeout: float | None = None) -> dict[str, Any]:
        """Block (pushed by Redis) until the job completed or failed; its record."""
        job_id = _check_id(job_id)
        record = wait_for_terminal(self.client, self.keys, job_id,
                                   lambda: self.get_job(job_id), timeout,
                                   read_status=lambda: self.scripts.await_status(job_id),
                                   since=self.own_posts.since(job_id))
        # the record an event carries is small: a big result is only marked in it
        return with_result_kept_apart(self.client, self.keys, job_id, record)

    def block_until_result(self, job_id: str | int, timeout: float | None = None) -> Any:
        """The job's result once completed; JobFailed if it did not complete."""
        record = self.wait(job_id, timeout)
        if record["status"] != COMPLETED:  # failed, cancelled or expired
            raise JobFailed(f"job {record['id']} {record['status']}: {record['result']}", record)
        return record["result"]

    def watch(self, job_id: str | int, keepalive: float = 15.0,
              tick: float | None = None) -> Iterator[dict[str, Any] | None]:
        """The job's state now, then each change; None when `keepalive` passes quietly
        (and every `tick` seconds, if given: events.watch)."""
        job_id = _check_id(job_id)
        fields = ["status", "progress"]
        self.get_job(job_id, fields=fields)  # JobNotFound before anything is listened to
        return watch(self.client, self.keys, job_id,
                     lambda: self.get_job(job_id, fields=fields), keepalive, tick)

    def stream(self, job_id: str | int, after: str = "0-0") -> Iterator[tuple[str, Any]]:
        """(entry id, chunk) of the job's streamed output after entry `after`, as it
        comes, until the job ends; resume after the last id seen (streams.py)."""
        return streams.read(self, _check_id(job_id), after)

    @property
    def heartbeat_client(self) -> redis.Redis:  # connections of their own (Clients)
        return self.clients.heartbeats

    def ping(self) -> bool:
        return bool(self.client.ping())

    # -- listeners ----------------------------------------------------------
    def create_listener(self, function: Listener | dict | bytes | None = None, *,
                        concurrency: int | None = None, batch_size: int | None = None,
                        batch_wait: float = 0.0) -> str | None:
        """Register `function` for the whole namespace and consume in background
        threads. A function that cannot be pickled (it holds a lock, a socket...)
        still runs here, in this process only, with a warning."""
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
        """Register code uploaded by someone else (POST /consumer), never unpickling
        it. With a secret set, the upload must carry its uploader's valid signature:
        SignatureError otherwise, and nothing is stored."""
        return self.registry.store_upload(upload, name)

    def remove_listener(self, function: Listener | str | dict | bytes) -> bool:
        return self.registry.unregister(function)

    def listener_names(self) -> list[str]:
        return self.registry.names()

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

    # -- reading the namespace as a whole (listing.py) ------------------------
    def job_count(self, queue: str = DEFAULT_QUEUE) -> int:
        """Jobs waiting in `queue`, over every priority and owner."""
        return self.listing.job_count(queue)

    def queue_names(self) -> list[str]:
        return self.listing.queue_names()

    def stats(self) -> dict[str, Any]:
        """Counts and counters shared by every process (for status and metrics)."""
        return self.listing.stats()

    def list_jobs(self, status: str | None = None, queue: str | None = None, offset: int = 0,
                  limit: int = 50) -> tuple[int, list[dict[str, Any]]]:
        """(how many match, one page of their records newest first, without `result`)."""
        return self.listing.list_jobs(status, queue, offset, limit)

    def workers(self) -> list[dict[str, Any]]:
        """Every known worker with its last heartbeat; `alive` False once it expired."""
        return self.listing.workers()

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.listing.dead_letters()

    def dead_by_queue(self) -> dict[str, int]:
        return self.listing.dead_by_queue()

    # -- taking jobs back (recovery.py) ----------------------------------------
    def recover_job(self, job_id: str, worker_id: str, max_retries: int, now: float,
                    reason: str) -> int:
        """Take a job back from a worker: 1 requeued, 2 failed, 0/3 nothing to report."""
        return self.recovery.recover_job(job_id, worker_id, max_retries, now, reason)

    def fail_job(self, job_id: str, worker_id: str, attempt: int, reason: str,
                 now: float | None = None, error_kind: str | None = None) -> bool:
        """Fail a running attempt from outside it (time limit, OOM); fenced like a finish."""
        return self.recovery.fail_job(job_id, worker_id, attempt, reason, now, error_kind)

    def requeue_dead(self, job_id: str | int | None = None) -> int:
        """Requeue one dead letter, or all of them (each at most once)."""
        return self.recovery.requeue_dead(None if job_id is None else _check_id(job_id))

    def purge_dead(self, job_id: str | int | None = None) -> int:
        """Delete one dead letter, or all of them."""
        return self.recovery.purge_dead(None if job_id is None else _check_id(job_id))

    def clear_all(self) -> int:
        """Delete every key of this namespace and nothing else; returns how many."""
        return self.control.clear_all()

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
        self.clients.close()

    def __enter__(self) -> MLQ:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MLQ({self.namespace!r})"
