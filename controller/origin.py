"""Which requests the server answers at all, before credentials are looked at.

Two attacks need no token on the default set-up (loopback, no token), because the
attacker's page runs in the user's own browser, which can reach loopback:
- DNS rebinding: a name the attacker controls resolves to 127.0.0.1, and the
  browser then treats our answers as the attacker's same-origin content. The
  request still carries the attacker's name in `Host`, so only the names this
  server is known by are answered.
- Cross-site writes: a page may send a "simple" POST (no-cors, or a form) to any
  address without asking first. A browser marks it with `Origin` or
  `Sec-Fetch-Site`, so any state-changing request so marked as coming from
  another site is refused. Clients that are not browsers (curl, requests, the
  CLI) send neither header and are not affected.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, request
from werkzeug.exceptions import Forbidden

from .helpers import current_state

#: Names every server answers to: what a local browser, curl or the CLI send.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: Methods that change nothing (the routes are written so), open to any origin.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANY_HOST = "*"


def allowed_hosts(bind_address: str | None, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """The Host names to answer: loopback, the bound address and `extra`; None for any."""
    names = [name.strip().lower() for name in extra if name.strip()]
    if ANY_HOST in names:
        return None
    if bind_address and bind_address.strip():
        names.append(bind_address.strip().lower())
    return frozenset(LOOPBACK_HOSTS) | {_bracketed(name) for name in names}


def _bracketed(name: str) -> str:
    # an IPv6 literal stands in brackets in a Host header
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def host_name(host: str) -> str:
    """The name part of a Host header, lower case, without the port."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[:host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def install(app: Flask) -> None:
    """Check Host and cross-site writes before every request of `app`, first of all checks."""
    app.before_request(check_request)


def check_request() -> None:
    """403 for an unknown Host, or a state-changing request that a browser sent from another site."""
    allowed = current_state().allowed_hosts
    host = request.headers.get("Host")
    # A request without Host (HTTP/1.0 by hand) did not come from a browser.
    if allowed is not None and host is not None and host_name(host) not in allowed:
        raise Forbidden(
            f"Host {host_name(host)!r} is not one this server answers to: add it with "
            "--allowed_hosts (or MLQ_ALLOWED_HOSTS), comma-separated, '*' for any")
    if request.method not in SAFE_METHODS and from_another_site():
        raise Forbidden("cross-site request refused: a page on another origin may not change "
                        "anything here (Origin or Sec-Fetch-Site names another site)")


def from_another_site() -> bool:
    """True when the browser says this request comes from a page of another origin."""
    if request.headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("Origin")
    return origin is not None and not names_this_server(origin)


def names_this_server(url: str) -> bool:
    """Whether `url`'s origin is this server ("null" and other non-URLs never are)."""
    parts = urlsplit(url)
    if not parts.netloc or parts.scheme not in ("http", "https"):
        return False
    # the host only: a proxy that ends TLS makes our scheme http while the
    # browser's Origin says https, and a scheme alone is no other site
    return parts.netloc.lower() == request.host.lower()
