"""The child side of supervised workers: what a spawned worker process runs, what
the supervisor knows of each child, and what a child tells it through its pipe.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Callable

from .keys import DEFAULT_QUEUE
from .listeners import Listener, function_name
from .queue import MLQ
from .hooks import WorkerHooks
from .worker import Worker


@dataclass
class ChildConfig:
    namespace: str
    redis_url: str
    worker_id: str
    imports: tuple[str, ...] = ()
    secret: str | None = None
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    log_level: int = logging.INFO
    mlq_options: dict[str, Any] = field(default_factory=dict)
    gpu: str | None = None
    #: how the child sets up logging (picklable, e.g. a JSON formatter); None: text
    log_setup: Callable[[int], None] | None = None


@dataclass
class Child:
    worker_id: str
    process: Any
    conn: Connection
    started: float
    job: tuple[str, int, float, float | None] | None = None  # id, attempt, start, timeout
    kill_reason: tuple[str, str, int] | None = None  # reason, job id, attempt
    took_a_job: bool = False
    gpu: str | None = None
    error_kind: str | None = None
    batch_fitted: int | None = None  # the largest batch that fits, once one did not


def import_listener(spec: str) -> tuple[str, Listener]:
    """Load `module:function` (what --import names)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected module:function, got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{spec} is not callable")
    return function_name(target), target


OOM_KILLED = "killed by the kernel's OOM killer (out of memory)"


def oom_kill_count(path: str = "/sys/fs/cgroup/memory.events") -> int | None:
    """How many processes the OOM killer ended in this cgroup (v2), or None if unknown."""
    try:
        with open(path) as events:
            for line in events:
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return None


class _PipeHooks(WorkerHooks):
    """Tells the supervisor about jobs with a time limit, which it enforces.

    Only those: a message per job would wake the supervisor twice per job and
    cost the children CPU; everything else it needs it reads from Redis.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.limited: set[str] = set()

    def job_started(self, worker_id: str, job_id: str, attempt: int, timeout: float | None) -> None:
        if timeout:
            self.limited.add(job_id)
            self._send(("start", job_id, attempt, timeout, time.time()))

    def job_ended(self, worker_id: str, job_id: str) -> None:
        if job_id in self.limited:
            self.limited.discard(job_id)
            self._send(("end", job_id))

    def batch_fitted(self, worker_id: str, size: int) -> None:
        self._send(("fitted", size))

    def _send(self, message: tuple[Any, ...]) -> None:
        # the supervisor may be gone (SIGKILLed): finish the job anyway; the stop
        # listener has seen the pipe close and this child stops after it
        with self.lock:
            try:
                self.conn.send(message)
            except (OSError, ValueError):
                pass


def child_main(config: ChildConfig, conn: Connection) -> None:
    """Entry point of a spawned child: consume until the supervisor says stop."""
    # Ctrl-C in a terminal, and systemd's or a process manager's SIGTERM, reach the
    # whole process group; the supervisor decides how the children stop (running
    # jobs finish first), so they ignore both.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if config.gpu is not None:
        # before any listener module can initialise CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = config.gpu
    if config.log_setup is not None:
        config.log_setup(config.log_level)
    else:
        logging.basicConfig(level=config.log_level,
                            format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    local = dict(import_listener(spec) for spec in config.imports)
    mlq = MLQ(config.namespace, redis_url=config.redis_url, secret=config.secret,
              **config.mlq_options)
    stop = threading.Event()

    def listen_for_stop() -> None:
        try:
            while conn.recv() != "stop":
                pass
        except (EOFError, OSError):
            pass  # the supervisor is gone: stop too
        stop.set()

    threading.Thread(target=listen_for_stop, name="mlq-stop-listener", daemon=True).start()
    mlq.registry.start_following(stop)
    worker = Worker(mlq, config.worker_id, local_listeners=local, queues=config.queues,
                    hooks=_PipeHooks(conn))
    worker.run(stop)
    mlq.listener_states.teardown_all()
    mlq.callbacks.close(wait=True)
