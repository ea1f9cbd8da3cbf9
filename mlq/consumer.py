"""In-process consuming for `create_listener`: worker threads plus a heartbeat thread.

Threads cannot be killed, so a job over its time limit is failed from the
heartbeat thread (fenced: the late finish of the stuck listener changes
nothing). The supervised mode (mlq.supervisor) kills the process instead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

import redis

from .heartbeat import beat, new_worker_id, retire
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
        beat(self.mlq.client, self.mlq.keys,
             {w.worker_id: {**info, "job": w.current[0] if w.current else None}
              for w in self.workers},
             self.mlq.heartbeat_timeout)

    def _heartbeat_loop(self) -> None:
        while not self.stop_event.wait(self._next_wait()):
            try:
                self._beat()
                self._enforce_time_limits()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("heartbeat failed: %s", exc)

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
                    log.error("job %s failed: %s (its thread runs on until the listener returns)",
                              job_id, time_limit_reason(timeout))

    def stop(self, timeout: float | None = None) -> None:
        self.stop_event.set()
        current = threading.current_thread()
        # the registry follower is a daemon that leaves quietly within a second
        for thread in [*self.threads, self._heartbeat_thread]:
            if thread is not None and thread is not current:
                thread.join(timeout)
        try:
            retire(self.mlq.client, self.mlq.keys,
                   [w.worker_id for w, t in zip(self.workers, self.threads) if not t.is_alive()])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("could not retire heartbeats: %s", exc)
