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

import urllib3

from . import defaults
from .errors import InvalidMessage
from .signing import SIGNATURE_HEADER, signature_header

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


#: Cloud metadata services that are not link-local: Alibaba, AWS over IPv6, Azure's
#: platform endpoint, Oracle's legacy one. (169.254.169.254 is link-local.)
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "100.100.100.200", "fd00:ec2::254", "168.63.129.16", "192.0.0.192"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], Sequence[str]]


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to now, in the resolver's order (OSError if none)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


def embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped, 6to4 or NAT64; else None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden_address(text: str) -> bool:
    """Whether a callback must never go to this address: link-local (cloud
    metadata at 169.254.169.254, fe80::/10) or a known metadata address, in any
    of the IPv6 forms that carry an IPv4 address."""
    address = ipaddress.ip_address(text)
    for candidate in (address, embedded_ipv4(address)):
        if candidate is not None and (candidate.is_link_local or candidate in METADATA_ADDRESSES):
            return True
    return False


class Refused(Exception):
    """A callback that must not be sent at all (not a failed attempt)."""


class CallbackSender:
    """Sends callbacks from a small thread pool, so a hung endpoint delays no job."""

    def __init__(self, timeout: float = defaults.CALLBACK_TIMEOUT,
                 attempts: int = defaults.CALLBACK_ATTEMPTS,
                 backoff: Sequence[float] = defaults.CALLBACK_BACKOFF,
                 threads: int = defaults.CALLBACK_THREADS,
                 sleep: Callable[[float], None] = time.sleep,
                 secret: str | bytes | None = None,
                 allow_hosts: Sequence[str] | None = None,
                 allow_link_local: bool = False, resolver: Resolver = resolve) -> None:
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = tuple(backoff)
        self._sleep = sleep
        self._threads = threads
        self.secret = secret
        self.allow_hosts = None if allow_hosts is None else frozenset(h.lower() for h in allow_hosts)
        self.allow_link_local = allow_link_local
        self._resolve = resolver
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
        host = urlsplit(full_url).hostname or ""
        if self.allow_hosts is not None and host.lower() not in self.allow_hosts:
            log.error("callback %s refused: host %r is not in the callback allowlist",
                      full_url, host)
            return False
        headers = {}
        if self.secret:
            # the HMAC-SHA256 of the full URL, so the receiver can trust the query
            headers[SIGNATURE_HEADER] = signature_header(self.secret, full_url.encode())
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.backoff[min(attempt - 1, len(self.backoff) - 1)])
            try:
                status = self._attempt(full_url, headers)
                if 200 <= status < 300:
                    return True
                log.warning("callback %s answered %s (attempt %d)", full_url, status, attempt + 1)
            except Refused as exc:
                log.error("callback %s refused: %s", full_url, exc)
                return False
            except (OSError, urllib3.exceptions.HTTPError) as exc:
                log.warning("callback %s failed: %s (attempt %d)", full_url, exc, attempt + 1)
        log.error("callback %s given up after %d attempts", full_url, self.attempts)
        return False

    def _attempt(self, full_url: str, headers: dict[str, str]) -> int:
        """One GET, to an address resolved and checked for this attempt alone.

        The connection goes to the very address that was checked (the Host header
        and the TLS name stay the URL's), so a name that resolves to a public
        address for the check and to a metadata address a moment later gains nothing.
        """
        parts = urlsplit(full_url)
        host = parts.hostname or ""
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        addresses = self._resolve(host, port)  # OSError: a failed attempt, tried again
        if not addresses:
            raise OSError(f"{host!r} resolves to no address")
        if not self.allow_link_local:
            for address in addresses:
                if forbidden_address(address):
                    raise Refused(f"host {host!r} resolves to {address}, a link-local or "
                                  "cloud metadata address")
        pool: urllib3.HTTPConnectionPool
        if https:
            pool = urllib3.HTTPSConnectionPool(addresses[0], port, server_hostname=host,
                                               assert_hostname=host, cert_reqs="CERT_REQUIRED",
                                               timeout=self.timeout, retries=False)
        else:
            pool = urllib3.HTTPConnectionPool(addresses[0], port, timeout=self.timeout,
                                              retries=False)
        target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        with pool:
            response = pool.urlopen("GET", target, headers={"Host": parts.netloc.rsplit("@", 1)[-1],
                                                            **headers},
                                    redirect=False, retries=False, preload_content=True)
        return int(response.status)

    def close(self, wait: bool = True) -> None:
        """Stop taking callbacks; with `wait`, let the queued ones finish."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=not wait)
