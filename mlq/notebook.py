"""Running a function itself on a worker, from a notebook: submit, map, Job handles.

The function travels by value (cloudpickle), signed when a secret is set, so
workers on other machines need none of the notebook's code. Its result and
exception come back pickled the same way, so any Python object works.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import reprlib
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import cloudpickle

from .errors import JobFailed, SignatureError
from .job import COMPLETED, FAILED, TERMINAL, error_kind
from .lifecycle import retried
from .position import InLine
from .posting import Posted, checked_post, enqueue, post_many
from .record import CALL_FIELD, Outcome, completed, failed
from .serialization import pack_result
from .signing import seal, unseal
from .streams import Emitter

if TYPE_CHECKING:
    from .queue import MLQ
    from .worker import Worker

log = logging.getLogger("mlq.worker")


_progress: contextvars.ContextVar[Callable[[Any], Any] | None] = contextvars.ContextVar(
    "mlq_progress", default=None)


def report_progress(value: Any) -> bool:
    """From inside a submitted function: set its job's progress (e.g. a percentage).

    Returns False when not running as a job (so the same code runs locally too).
    """
    update = _progress.get()
    if update is None:
        return False
    return bool(update(value))


class RemoteError(JobFailed):
    """A submitted function raised; the message carries the remote traceback."""


def pack_call(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
              secret: str | bytes | None) -> bytes:
    return seal(cloudpickle.dumps((function, args, kwargs)), secret)


def run_call(sealed: bytes, secret: str | bytes | None,
             progress: Callable[[Any], Any] | None = None) -> Any:
    """Run a submitted call on a worker (SignatureError when not signed as required);
    `progress` is what report_progress() calls inside it."""
    function, args, kwargs = cloudpickle.loads(unseal(sealed, secret))
    token = _progress.set(progress)
    try:
        return function(*args, **kwargs)
    finally:
        _progress.reset(token)


def pack_value(value: Any, secret: str | bytes | None) -> bytes | None:
    try:
        return seal(cloudpickle.dumps(value), secret)
    except Exception:  # some exceptions and objects cannot be pickled
        return None


class Job:
    """A handle on one job: status, progress, result, cancel, wait."""

    def __init__(self, mlq: MLQ, job_id: str) -> None:
        self.mlq = mlq
        self.id = job_id

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.status}>"

    @property
    def status(self) -> str:
        return self.mlq.get_job(self.id)["status"]

    @property
    def progress(self) -> Any:
        return self.mlq.get_job(self.id)["progress"]

    def cancel(self) -> bool:
        """A queued job never runs; a running one is stopped (supervised workers).

        True when the job was cancelled or asked to stop; False once it had finished.
        """
        return self.mlq.cancel(self.id)

    def stream(self, after: str = "0-0") -> Iterator[tuple[str, Any]]:
        """(entry id, chunk) of its streamed output, as it comes (MLQ.stream)."""
        return self.mlq.stream(self.id, after)

    def wait(self, timeout: float | None = None, progress: bool = False) -> dict[str, Any]:
        """Block until the job ends and return its record; `progress` shows a tqdm bar."""
        if not progress:
            return self.mlq.wait(self.id, timeout)
        from tqdm.auto import tqdm  # a widget in Jupyter, text in a terminal
        deadline = None if timeout is None else time.monotonic() + timeout
        # while it waits: "#4 in line, ~40 s", read again each second (the keep-alive)
        in_line, status = InLine(self.mlq, self.id), None
        with tqdm(total=100, desc=f"job {self.id}", unit="%") as bar:
            for event in self.mlq.watch(self.id, keepalive=1.0):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} not finished within {timeout} s")
                if event is not None:
                    status, value = event["status"], event["progress"]
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                        bar.n = min(float(value), 100.0)
                place = in_line.text(status)
                bar.set_postfix_str(f"{status}, {place}" if place else str(status))
                bar.refresh()
                if status in TERMINAL:
                    break
        return self.mlq.get_job(self.id)

    def result(self, timeout: float | None = None) -> Any:
        """The function's return value; re-raises its exception if it failed."""
        record = self.mlq.wait(self.id, timeout)
        secret = self.mlq.secret
        if record["status"] != COMPLETED:  # failed, cancelled or expired
            exception = _unpickle(record.get("exception"), secret)
            message = f"job {self.id} failed: {record['error']}"
            if isinstance(exception, BaseException):
                if hasattr(exception, "add_note"):
                    exception.add_note(f"remote traceback:\n{record['error']}")
                raise exception
            raise RemoteError(message, record)
        if record.get(CALL_FIELD) and isinstance(record["result"], bytes):
            return _unpickle(record["result"], secret)
        return record["result"]


def _unpickle(sealed: bytes | None, secret: str | bytes | None) -> Any:
    if not sealed:
        return None
    try:
        return cloudpickle.loads(unseal(sealed, secret))
    except SignatureError:
        raise
    except Exception:
        return None


#: How long the text of a call's arguments or of its result may be: enough to
#: recognise it on the dashboard, never a second copy of a big input.
SHORT_CHARS = 200
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 80
#: Options that name one job: a map of many calls cannot share them.
_ONE_JOB_OPTIONS = frozenset({"key", "key_ttl", "token"})


def _capped(text: str) -> str:
    return text if len(text) <= SHORT_CHARS else text[:SHORT_CHARS - 1] + "…"


def call_name(function: Callable[..., Any]) -> str:
    """'module.qualname' of what `function` runs (the function a partial wraps)."""
    target = getattr(function, "func", function)
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = getattr(target, "__module__", None)
    return _capped(f"{module}.{name}" if module else str(name))


def call_text(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The arguments of a call as short text, e.g. "2, lr=0.1" (reprlib: a long
    value shows its start, a failing __repr__ shows its type)."""
    parts = [_short.repr(arg) for arg in args]
    parts += [f"{name}={_short.repr(value)}" for name, value in kwargs.items()]
    return _capped(", ".join(parts))


def result_text(value: Any) -> str:
    """short_result of a submitted call: the text a str, the short repr of anything
    else. The server shows it; it never loads the pickled result."""
    return _capped(value if isinstance(value, str) else _short.repr(value))


def call_fields(function: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> dict[str, Any]:
    """The record fields of a submitted call besides its pickle, written by the
    client: the server can show what runs without unpickling anything."""
    return {CALL_FIELD: True, "call_name": call_name(function),
            "call_args": call_text(args, kwargs)}


def submit_many(mlq: MLQ, function: Callable[..., Any],
                calls: Iterable[tuple[tuple[Any, ...], dict[str, Any]]],
                **options: Any) -> list[Job]:
    """Post one job per (args, kwargs) calling `function`; `options` as MLQ.post's."""
    calls = list(calls)
    sealed = [pack_call(function, args, kwargs, mlq.secret) for args, kwargs in calls]
    extras = [call_fields(function, args, kwargs) for args, kwargs in calls]
    if len(calls) == 1:  # every post option applies to one job
        ids = [enqueue(mlq, sealed[0], extra=extras[0], **options).id]
    elif options.keys() & _ONE_JOB_OPTIONS:
        raise TypeError(f"map takes none of {', '.join(sorted(_ONE_JOB_OPTIONS))}: "
                        "each names one job")
    elif "depends_on" in options:  # post_many takes no dependencies: one post each
        ids = [enqueue(mlq, msg, extra=more, **options).id for msg, more in zip(sealed, extras)]
    else:
        ids = post_many(mlq, sealed, extra=extras, **options)
    return [Job(mlq, job_id) for job_id in ids]


#: The job options MLQ.options takes: post's keywords.
JOB_OPTIONS = frozenset(inspect.signature(checked_post).parameters) - {"mlq", "msg", "extra"}


class Options:
    """Job options for the jobs it posts (MLQ.options): its submit and map route
    calls like post does messages, and every keyword of submit still goes to the
    function. Keywords given to post (enqueue, post_many) win over the handle's."""

    def __init__(self, mlq: MLQ, options: dict[str, Any]) -> None:
        unknown = sorted(set(options) - JOB_OPTIONS)
        if unknown:  # now, not when a post finally uses them
            raise TypeError(f"options() got unexpected option(s) {', '.join(map(repr, unknown))};"
                            f" it takes {', '.join(sorted(JOB_OPTIONS))}")
        self.mlq = mlq
        self.job_options = dict(options)

    def __repr__(self) -> str:
        return f"<Options {self.job_options!r} of {self.mlq!r}>"

    def options(self, **options: Any) -> Options:
        """These options with more (or other) ones."""
        return Options(self.mlq, {**self.job_options, **options})

    def submit(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job:
        """Run `function(*args, **kwargs)` on a worker (MLQ.submit), with these options."""
        return submit_many(self.mlq, function, [(args, kwargs)], **self.job_options)[0]

    def map(self, function: Callable[..., Any], items: Iterable[Any],
            timeout: float | None = None) -> list[Any]:
        """`[function(item) for item in items]` on the workers (MLQ.map), with these options."""
        jobs = submit_many(self.mlq, function, [((item,), {}) for item in items],
                           **self.job_options)
        return [job.result(timeout) for job in jobs]

    def post(self, msg: Any, callback: str | None = None, functions: list[str] | None = None,
             **options: Any) -> str:
        """MLQ.post with these options."""
        return self.enqueue(msg, callback, functions, **options).id

    def enqueue(self, msg: Any, callback: str | None = None,
                functions: list[str] | None = None, **options: Any) -> Posted:
        """MLQ.enqueue with these options."""
        return enqueue(self.mlq, msg, **self._merged(callback, functions, options))

    def post_many(self, msgs: Iterable[Any], callback: str | None = None,
                  functions: list[str] | None = None, **options: Any) -> list[str]:
        """MLQ.post_many with these options."""
        return post_many(self.mlq, msgs, **self._merged(callback, functions, options))

    def _merged(self, callback: str | None, functions: list[str] | None,
                options: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.job_options, **options}
        if callback is not None:
            merged["callback"] = callback
        if functions is not None:
            merged["functions"] = functions
        return merged


def job_options(mlq: MLQ, **options: Any) -> Options:
    """A handle whose submit, map, post, enqueue and post_many post with these job
    options (post's keywords: queue, priority, owner, timeout, retries...), e.g.
    ``q.options(queue="gpu", priority=5).submit(train, 2)``. TypeError now for a
    name post does not take."""
    return Options(mlq, options)


def execute_call(worker: Worker, record: dict[str, Any]) -> Outcome:
    """Run a job that carries its own function (MLQ.submit) on `worker`: the outcome
    to record. The return value, or the exception, travels back pickled and signed."""
    secret = worker.mlq.secret
    job_id, attempt = record["id"], record["attempt"]
    try:
        value = run_call(record["msg"], secret,
                         lambda v: worker.update_progress(job_id, attempt, v))
        if inspect.isawaitable(value):
            value = worker.run_awaitable(value)
        # a generator streams its yields, as a listener's does; its chunks are the result
        value = Emitter(worker.mlq, job_id).collect(value, worker.run_awaitable)
    except SignatureError as exc:
        reason = f"job code is not signed: {exc}"
        log.error("job %s refused: %s", job_id, reason,
                  extra=worker.log_fields(job_id, attempt, "refused", 0.0))
        return FAILED, failed(reason), None
    except Exception as exc:
        return retried(record, exc, worker.clock()) or (
            FAILED, failed(str(exc), traceback.format_exc(), error_kind(exc),
                           exception=pack_value(exc, secret)), None)
    short = result_text(value)
    sealed = pack_value(value, secret)
    if sealed is None:
        return FAILED, failed(f"result of type {type(value).__name__} cannot be pickled"), None
    return COMPLETED, completed(pack_result(sealed), short), short
