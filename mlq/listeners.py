"""The listener registry shared through Redis (SPEC §3) and the listener's args[0]."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

import cloudpickle
import redis

from .errors import ListenerError, SignatureError
from .keys import Keys, check_function_name
from .scripts import Scripts
from .signing import seal, seal_signed, unseal
from .uploads import Upload, read_envelope, upload_name

if TYPE_CHECKING:
    from .queue import MLQ

log = logging.getLogger("mlq.listeners")

Listener = Callable[..., Any]


_warned_without_secret = False


def warn_once_without_secret(secret: object, client: Any = None) -> None:
    """Say once per process that, with no secret, stored code runs unchecked.

    It is a warning where people other than this host's users can write to Redis;
    where only they can (loopback behind a password, or a unix socket), a note at
    debug level: the embedded default needs no secret to be safe on a laptop.
    """
    global _warned_without_secret
    if secret or _warned_without_secret:
        return
    _warned_without_secret = True
    level = logging.WARNING if writable_from_elsewhere(client) else logging.DEBUG
    # the workers' logger: it is the worker that runs the code
    logging.getLogger("mlq.worker").log(
        level, "no secret set (MLQ_SECRET / --secret): this worker runs any function stored "
        "in Redis; anyone who can write to Redis can run code here")


def writable_from_elsewhere(client: Any) -> bool:
    """Whether anyone but this host's users who hold its password may write to this Redis."""
    settings = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if settings is None:  # a cluster, or a client we cannot read: assume the worst
        return True
    if settings.get("path"):  # a unix socket: its file's permissions decide
        return False
    host = str(settings.get("host", "")).strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return not (loopback and settings.get("password"))


def load_pickled(payload: bytes) -> Listener:
    """Unpickle a function; ListenerError for anything that is not a callable."""
    try:
        function = cloudpickle.loads(payload)
    except Exception as exc:  # a hostile or broken pickle can raise anything
        raise ListenerError(f"cannot unpickle function: {type(exc).__name__}: {exc}") from exc
    if not callable(function):
        raise ListenerError(f"not a function: {type(function).__name__}")
    return function


def listener(function: Listener | None = None, *, setup: Callable[[], Any] | None = None,
             teardown: Callable[[Any], Any] | None = None, batch_size: int | str | None = None,
             batch_wait: float = 0.0) -> Any:
    """Attach worker-lifetime hooks or batching to a listener (usable as a decorator).

    With `batch_size`, the listener is called with a list of up to that many
    messages (waiting up to `batch_wait` seconds to fill it) and returns a list
    of outcomes, one per message; an exception instance in that list fails only
    its own job. `args[0]['jobs']` holds each job's usual context. A batch that
    runs out of memory is run again in halves, down to single jobs (batching.py);
    batch_size="auto" starts each batch at the largest size that fitted so far.

    `setup()` runs once per worker process before the listener's first job (load
    a model there); its return value is `args[0]['state']` in every call in that
    process. `teardown(state)` runs when the worker stops. The hooks travel with
    the function through the registry.
    """
    if batch_size is not None and batch_size != "auto" and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ListenerError('batch_size must be a positive integer or "auto"')
    if batch_wait < 0:
        raise ListenerError("batch_wait must not be negative")

    def attach(target: Listener) -> Listener:
        target.__mlq_setup__ = setup  # type: ignore[attr-defined]
        target.__mlq_teardown__ = teardown  # type: ignore[attr-defined]
        target.__mlq_batch__ = (batch_size, batch_wait) if batch_size else None  # type: ignore[attr-defined]
        return target

    return attach(function) if function is not None else attach


class ListenerStates:
    """The setup() results of one process, each made once, torn down at stop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, tuple[Listener, Any]] = {}

    def state_for(self, name: str, function: Listener) -> Any:
        setup = getattr(function, "__mlq_setup__", None)
        if setup is None:
            return None
        with self._lock:  # several worker threads: still one setup per process
            known = self._states.get(name)
            if known is not None and known[0] is function:
                return known[1]
            if known is not None:
                self._teardown(name, *known)
            state = setup()
            self._states[name] = (function, state)
            return state

    def teardown_all(self) -> None:
        with self._lock:
            states, self._states = self._states, {}
        for name, (function, state) in states.items():
            self._teardown(name, function, state)

    @staticmethod
    def _teardown(name: str, function: Listener, state: Any) -> None:
        teardown = getattr(function, "__mlq_teardown__", None)
        if teardown is not None:
            try:
                teardown(state)
            except Exception:
                log.exception("teardown of listener %r failed", name)


def function_name(function: Listener) -> str:
    name = getattr(function, "__name__", None)
    if not isinstance(name, str) or not name:
        raise ListenerError("a listener needs a __name__")
    return check_function_name(name)


class Registry:
    """Listener code of one namespace: stored in Redis, cached per process."""

    def __init__(self, client: redis.Redis, keys: Keys, scripts: Scripts,
                 secret: str | bytes | None = None,
                 max_function_size: int | None = None) -> None:
        self.client = client
        self.keys = keys
        self.scripts = scripts
        self.secret = secret
        self.max_function_size = max_function_size
        self._lock = threading.Lock()
        self._loaded_seq: str | None = None
        self._functions: dict[str, Listener] = {}
        self._unsigned: set[str] = set()
        # name -> (stored bytes, function): a function is unpickled again only when
        # its stored bytes change, and one this process registered runs as the very
        # object it gave, not a copy
        self._cache: dict[str, tuple[bytes, Listener]] = {}

    # -- writing ------------------------------------------------------------
    def register(self, function: Listener | dict | bytes) -> str:
        """Store a function (object, pickle bytes or upload envelope), signed with
        this side's secret when it has one; returns its name.

        Bytes are never unpickled here: the name is read from the pickle's opcodes.
        """
        if callable(function):
            payload = cloudpickle.dumps(function)
            self._check_size(len(payload))
            name = function_name(function)
            stored = seal(payload, self.secret)
            with self._lock:
                self._cache[name] = (stored, function)
            self.scripts.register(name, stored)
            return name
        if isinstance(function, dict):
            upload = read_envelope(function)
        elif isinstance(function, (bytes, bytearray)):
            upload = Upload(bytes(function))
        else:
            raise ListenerError(f"not a function: {type(function).__name__}")
        return self.store_upload(upload, upload_name(upload), sign=True)

    def store_upload(self, upload: Upload, name: str, *, sign: bool = False) -> str:
        """Store uploaded code under `name`, never unpickling it.

        `sign`: sign it with this side's secret (a trusted caller, such as this
        library's own user). Otherwise, with a secret set, the upload must carry
        the uploader's own valid signature (SignatureError if not), which is
        stored as it is: holding the server's token is not holding the secret.
        """
        self._check_size(len(upload.payload))
        if sign or not (self.secret or upload.signature):
            stored = seal(upload.payload, self.secret)
        else:
            stored = seal_signed(upload.payload, upload.signature, self.secret)
        self.scripts.register(name, stored)
        return name

    def _check_size(self, size: int) -> None:
        if self.max_function_size is not None and size > self.max_function_size:
            raise ListenerError(f"function of {size} bytes exceeds the limit of "
                                f"{self.max_function_size} bytes")

    def unregister(self, function: Listener | str | dict | bytes) -> bool:
        if isinstance(function, str):
            name = check_function_name(function)
        elif isinstance(function, (dict, bytes, bytearray)):
            name = upload_name(read_envelope(function) if isinstance(function, dict)
                               else Upload(bytes(function)))
        else:
            name = function_name(function)
        return bool(self.scripts.unregister(name))

    def names(self) -> list[str]:
        return [n.decode() for n in self.client.zrange(self.keys.registry_order, 0, -1)]

    def info(self) -> list[dict[str, Any]]:
        """Name and stored size of each registered function, in registration order."""
        names = self.names()
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hstrlen(self.keys.registry, name)
            pipe.hget(self.keys.registry_times, name)
        answers = pipe.execute() if names else []
        return [{"name": n, "size": int(answers[2 * i]),
                 "registered": float(answers[2 * i + 1]) if answers[2 * i + 1] else None}
                for i, n in enumerate(names)]

    # -- reading ------------------------------------------------------------
    @property
    def loaded_seq(self) -> str | None:
        """The registry sequence of the listeners loaded; None before the first load."""
        return self._loaded_seq

    def refresh(self, seq: str | None = None) -> None:
        """Reload the registry when `seq` (from the take step) differs from what is loaded."""
        if seq is not None and seq == self._loaded_seq:
            return
        with self._lock:
            if seq is not None and seq == self._loaded_seq:
                return
            pipe = self.client.pipeline(transaction=True)
            pipe.get(self.keys.registry_seq)
            pipe.zrange(self.keys.registry_order, 0, -1)
            pipe.hgetall(self.keys.registry)
            current_seq, order, blobs = pipe.execute()
            cache: dict[str, tuple[bytes, Listener]] = {}
            unsigned: set[str] = set()
            for raw_name in order:
                name, stored = raw_name.decode(), blobs.get(raw_name)
                if stored is None:
                    continue
                known = self._cache.get(name)
                if known is not None and known[0] == stored:
                    cache[name] = known
                    continue
                try:
                    cache[name] = (stored, load_pickled(unseal(stored, self.secret)))
                except SignatureError as exc:
                    log.error("listener %r skipped: %s", name, exc)
                    unsigned.add(name)
                except ListenerError as exc:
                    log.error("listener %r skipped: %s", name, exc)
            self._cache = cache
            self._functions = {name: function for name, (_, function) in cache.items()}
            self._unsigned = unsigned
            self._loaded_seq = (current_seq or b"0").decode()

    def resolve(self, names: Iterable[str] | None, local: dict[str, Listener]) -> list[tuple[str, Listener]]:
        """The listeners a job runs: named ones in the job's order, else all of them.

        Raises ListenerError naming the first function this worker lacks.
        """
        registered = self._functions
        if names is None:
            chosen = list(local.items())
            chosen += [(n, f) for n, f in registered.items() if n not in local]
            return chosen
        chosen = []
        for name in names:
            function = local.get(name) or registered.get(name)
            if function is None:
                if name in self._unsigned:
                    raise ListenerError(f"function '{name}' is not signed")
                raise ListenerError(f"no listener named '{name}'")
            chosen.append((name, function))
        return chosen

    def functions(self) -> dict[str, Listener]:
        """The registered listeners this process has loaded."""
        return self._functions

    def follow(self, stop: threading.Event) -> None:
        """Reload as soon as pub/sub announces a change, until `stop` is set.

        Correctness does not depend on it (each take returns the registry's
        sequence number), but a new function is then unpickled before its first job.
        """
        while not stop.is_set():
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                try:
                    pubsub.subscribe(self.keys.registry_channel)
                    self.refresh()
                    while not stop.is_set():
                        if pubsub.get_message(timeout=1.0):
                            self.refresh()
                finally:
                    pubsub.close()
            except Exception as exc:  # a closed client or a lost Redis
                if stop.is_set():
                    return
                log.debug("registry follower: %s; resubscribing", exc)
                stop.wait(1.0)

    def start_following(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.follow, args=(stop,), name="mlq-registry",
                                  daemon=True)
        thread.start()
        return thread


def listener_context(mlq: MLQ, record: dict[str, Any],
                     update_progress: Callable[[Any], bool]) -> dict[str, Any]:
    """The dict a listener gets as args[0] (SPEC §3): the job's record, a progress
    reporter for this attempt, and the namespace's data store, post and wait;
    cancelled() (True once the job was cancelled: stop soon) and
    dependency_results() (each depends_on id's result)."""
    job_id = record["id"]
    return {
        "full_message": record,
        "update_progress": update_progress,
        "cancelled": _CancelCheck(mlq, job_id),
        "dependency_results": lambda: {
            i: mlq.get_job(i)["result"] for i in record.get("depends_on") or ()},
        "store_data": mlq.store_data,
        "fetch_data": mlq.fetch_data,
        "post": mlq.post,
        "block_until_result": mlq.block_until_result,
    }


class _CancelCheck:
    """A listener's cancelled(): asks Redis at most every CHECK_EVERY seconds, so a
    loop may call it on every step without a round trip each; True stays True."""

    CHECK_EVERY = 0.2

    def __init__(self, mlq: MLQ, job_id: str) -> None:
        self.mlq = mlq
        self.job_id = job_id
        self.answer = False
        self.asked = float("-inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.answer and now - self.asked >= self.CHECK_EVERY:
            self.asked = now
            record = self.mlq.get_job(self.job_id, fields=["cancel_requested"])
            self.answer = bool(record.get("cancel_requested"))
        return self.answer
