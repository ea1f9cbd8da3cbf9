"""Callback URLs (SPEC §5), sent off the job's critical path."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests

from . import defaults
from .errors import InvalidMessage
from .signing import sign_text

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


#: Header carrying the HMAC-SHA256 of the full callback URL when a secret is set.
SIGNATURE_HEADER = "X-MLQ-Signature"


def check_callback_url(url: str) -> None:
    """InvalidMessage unless `url` is an absolute http(s) URL (ASCII, as URIs are)."""
    if not url.isascii() or not url.isprintable() or " " in url:
        raise InvalidMessage("callback must be a URL of printable ASCII characters "
                             "(percent-encode the rest)")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidMessage(f"callback is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidMessage("callback must be an http:// or https:// URL")


def refusal(url: str, allow_hosts: frozenset[str] | None, allow_link_local: bool) -> str | None:
    """Why a callback to `url` must not be sent, or None when it may be.

    Link-local destinations (169.254.0.0/16, where cloud metadata services
    answer, and fe80::/10) are refused unless allowed, whatever name points there.
    """
    host = urlsplit(url).hostname or ""
    if allow_hosts is not None and host.lower() not in allow_hosts:
        return f"host {host!r} is not in the callback allowlist"
    if allow_link_local:
        return None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return None  # unresolvable: the attempt itself fails and is retried
    for address in addresses:
        if ipaddress.ip_address(address.split("%")[0]).is_link_local:
            return f"host {host!r} resolves to link-local address {address}"
    return None


class CallbackSender:
    """Sends callbacks from a small thread pool, so a hung endpoint delays no job."""

    def __init__(self, timeout: float = defaults.CALLBACK_TIMEOUT,
                 attempts: int = defaults.CALLBACK_ATTEMPTS,
                 backoff: Sequence[float] = defaults.CALLBACK_BACKOFF,
                 threads: int = defaults.CALLBACK_THREADS,
                 sleep: Callable[[float], None] = time.sleep,
                 secret: str | bytes | None = None,
                 allow_hosts: Sequence[str] | None = None,
                 allow_link_local: bool = False) -> None:
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = tuple(backoff)
        self._sleep = sleep
        self._threads = threads
        self.secret = secret
        self.allow_hosts = None if allow_hosts is None else frozenset(h.lower() for h in allow_hosts)
        self.allow_link_local = allow_link_local
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
        why_not = refusal(full_url, self.allow_hosts, self.allow_link_local)
        if why_not:
            log.error("callback %s refused: %s", full_url, why_not)
            return False
        headers = {}
        if self.secret:
            headers[SIGNATURE_HEADER] = "sha256=" + sign_text(self.secret, full_url)
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.backoff[min(attempt - 1, len(self.backoff) - 1)])
            try:
                response = requests.get(full_url, timeout=self.timeout, headers=headers,
                                        allow_redirects=False)
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
