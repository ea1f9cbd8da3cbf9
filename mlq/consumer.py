"""In-process consuming for `create_listener`: worker threads plus a heartbeat thread.

Threads cannot be killed, so a job over its time limit is failed from the
heartbeat thread (fenced: the late finish of the stuck listener changes
nothing). The supervised mode (mlq.supervisor) kills the process instead.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import redis

from . import defaults
from .errors import REDIS_DOWN
from .heartbeat import beat, capacity, new_worker_id, retire
from .job import time_limit_reason
from .worker import Worker

if TYPE_CHECKING:
    from .queue import MLQ

log = logging.getLogger("mlq.consumer")


class ThreadConsumer:
    def __init__(self, mlq: MLQ, concurrency: int = 1) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.mlq = mlq
        self.stop_event = threading.Event()
        self.workers = [Worker(mlq, new_worker_id(f"t{i}-"), local_listeners=mlq.local_listeners)
                        for i in range(concurrency)]
        self.threads: list[threading.Thread] = []
        self._heartbeat_thread: threading.Thread | None = None
        self._registry_thread: threading.Thread | None = None
        self._started = time.time()

    def start(self) -> None:
        _exit_hooks.add(self)
        self._beat()
        for worker in self.workers:
            # not daemon threads: the process keeps consuming after the caller's
            # main() returns, as the original worker pattern expects
            thread = threading.Thread(target=worker.run, args=(self.stop_event,),
                                      name=f"mlq-worker-{worker.worker_id}")
            thread.start()
            self.threads.append(thread)
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name="mlq-heartbeat", daemon=True)
        self._heartbeat_thread.start()
        self._registry_thread = self.mlq.registry.start_following(self.stop_event)

    def _beat(self) -> None:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "kind": "thread",
                "started": self._started}
        # the registry follower keeps the loaded functions current: no read per beat
        registered = list(self.mlq.registry.functions())
        beat(self.mlq.heartbeat_client, self.mlq.keys,
             {w.worker_id: {**info, **capacity(w.queues, w.local, registered, len(self.workers)),
                            "job": w.current[0] if w.current else None,
                            "batch_fitted": w.batches.fitted} for w in self.workers},
             self.mlq.heartbeat_timeout)

    def _heartbeat_loop(self) -> None:
        wait = self._next_wait()
        while not self.stop_event.wait(wait):
            try:
                self._beat()
                self._enforce_time_limits()
                wait = self._next_wait()
            except REDIS_DOWN as exc:
                log.warning("heartbeat failed: %s", exc)
                wait = min(self._next_wait(), defaults.HEARTBEAT_RETRY)

    def _next_wait(self) -> float:
        wait = self.mlq.heartbeat_interval
        now = time.time()
        for worker in self.workers:
            current = worker.current
            if current and current[3]:
                wait = min(wait, max(current[2] + current[3] - now, 0.01))
        return wait

    def _enforce_time_limits(self) -> None:
        now = time.time()
        for worker in self.workers:
            current = worker.current
            if current and current[3] and now - current[2] > current[3]:
                job_id, attempt, _, timeout = current
                if self.mlq.fail_job(job_id, worker.worker_id, attempt, time_limit_reason(timeout)):
                    # the failure itself is logged (an ERROR) by the recovery that failed it
                    log.warning("job %s: its thread runs on until the listener returns", job_id,
                                extra=worker.log_fields(job_id, attempt, "timed_out", now - current[2]))

    def leave_idle_lists(self) -> None:
        """Take every worker of this consumer off the idle lists at once, so no post
        hands a job to a process that is going away."""
        for worker in self.workers:
            try:
                self.mlq.scripts.leave_idle_lists(worker.worker_id, worker.queues)
            except redis.RedisError:
                return  # Redis is gone too: the idle claims lapse by themselves

    def stop(self, timeout: float | None = None) -> None:
        _exit_hooks.discard(self)  # its workers leave the idle lists as they stop
        self.stop_event.set()
        current = threading.current_thread()
        # the registry follower is a daemon that leaves quietly within a second
        for thread in [*self.threads, self._heartbeat_thread]:
            if thread is not None and thread is not current:
                thread.join(timeout)
        try:
            retire(self.mlq.client, self.mlq.keys,
                   [w.worker_id for w, t in zip(self.workers, self.threads) if not t.is_alive()])
        except REDIS_DOWN as exc:
            log.warning("could not retire heartbeats: %s", exc)


class _ExitHooks:
    """Takes in-process consumers off the idle lists when their process ends: at a
    normal exit, and on SIGTERM or SIGINT, before that signal's previous action.

    A handler is only added where the signal still has Python's default one and
    this is the main thread; an application's own handler is left alone (the idle
    claims then lapse within two blocking waits, and sweeps recover the rest).
    """

    def __init__(self) -> None:
        self._consumers: weakref.WeakSet[ThreadConsumer] = weakref.WeakSet()
        self._installed = False
        self._previous: dict[int, Any] = {}

    def add(self, consumer: ThreadConsumer) -> None:
        self._consumers.add(consumer)
        if self._installed:
            return
        self._installed = True
        atexit.register(self.leave_all)
        self._stop_on_interrupt()
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, default in ((signal.SIGTERM, signal.SIG_DFL),
                                (signal.SIGINT, signal.default_int_handler)):
            if signal.getsignal(signum) is default:
                self._previous[signum] = default
                signal.signal(signum, self._on_signal)

    def _stop_on_interrupt(self) -> None:
        """A Ctrl-C or SIGINT that another handler turned into KeyboardInterrupt (as
        asyncio.run does while it runs) ends the main thread with it: stop consuming
        then, or the interpreter waits for the worker threads for ever."""
        previous = sys.excepthook

        def on_uncaught(kind: type[BaseException], value: BaseException, tb: Any) -> None:
            if issubclass(kind, KeyboardInterrupt):
                for consumer in list(self._consumers):
                    consumer.leave_idle_lists()
                    consumer.stop_event.set()
            previous(kind, value, tb)

        sys.excepthook = on_uncaught

    def discard(self, consumer: ThreadConsumer) -> None:
        self._consumers.discard(consumer)

    def leave_all(self) -> None:
        for consumer in list(self._consumers):
            consumer.leave_idle_lists()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.leave_all()
        previous = self._previous[signum]
        if previous is signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)  # what the signal would have done
        else:
            previous(signum, frame)


_exit_hooks = _ExitHooks()
