"""Callback URLs (SPEC §5), sent off the job's critical path."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests

from . import defaults

log = logging.getLogger("mlq.callbacks")


def callback_url(url: str, success: bool, job_id: str, short_result: str | None) -> str:
    """`url` with success, job_id and short_result appended to any query it has."""
    parts = urlsplit(url)
    extra = urlencode({
        "success": 1 if success else 0,
        "job_id": job_id,
        "short_result": "" if short_result is None else short_result,
    })
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class CallbackSender:
    """Sends callbacks from a small thread pool, so a hung endpoint delays no job."""

    def __init__(self, timeout: float = defaults.CALLBACK_TIMEOUT,
                 attempts: int = defaults.CALLBACK_ATTEMPTS,
                 backoff: Sequence[float] = defaults.CALLBACK_BACKOFF,
                 threads: int = defaults.CALLBACK_THREADS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = tuple(backoff)
        self._sleep = sleep
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def send(self, url: str, success: bool, job_id: str, short_result: str | None) -> None:
        """Queue one callback; returns at once."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="mlq-callback")
            self._pool.submit(self.deliver, callback_url(url, success, job_id, short_result))

    def deliver(self, full_url: str) -> bool:
        """Try one callback up to `attempts` times; True once a 2xx answer came."""
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.backoff[min(attempt - 1, len(self.backoff) - 1)])
            try:
                response = requests.get(full_url, timeout=self.timeout)
                if 200 <= response.status_code < 300:
                    return True
                log.warning("callback %s answered %s (attempt %d)", full_url,
                            response.status_code, attempt + 1)
            except requests.RequestException as exc:
                log.warning("callback %s failed: %s (attempt %d)", full_url, exc, attempt + 1)
        log.error("callback %s given up after %d attempts", full_url, self.attempts)
        return False

    def close(self, wait: bool = True) -> None:
        """Stop taking callbacks; with `wait`, let the queued ones finish."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=not wait)
