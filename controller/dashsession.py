"""The dashboard's browser session and its protection against cross-site requests.

A browser cannot send the API's ``Authorization: Bearer`` header from a link or
a form, so the dashboard asks for the token once and keeps a session cookie:
``<expires>.<HMAC(key, expires)>``, the key derived from the token. Nothing is
stored server-side, every server process sharing the token accepts it, and
changing the token ends every session. The cookie is HttpOnly (scripts cannot
read it) and SameSite=Strict (other sites' requests do not carry it).

Every POST is also checked twice against cross-site forgery: its Origin (or
Referer) must be this server, and it must echo the CSRF token of a cookie the
page was served with (double submit): another site can neither read that cookie
nor make the browser send it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from flask import request
from werkzeug.exceptions import Forbidden
from werkzeug.wrappers import Response

from .app import ServerState

SESSION_COOKIE = "mlq_session"
CSRF_COOKIE = "mlq_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
#: How long a login lasts: a working week; asking for the token every day
#: would push people to paste it somewhere convenient instead.
SESSION_SECONDS = 7 * 24 * 3600


def _session_key(state: ServerState) -> bytes:
    assert state.token is not None
    # derived: the token itself is never an HMAC key for something else
    return hmac.new(state.token.encode(), b"mlq dashboard session v1", hashlib.sha256).digest()


def _signature(state: ServerState, expires: int) -> str:
    return hmac.new(_session_key(state), f"session:{expires}".encode(), hashlib.sha256).hexdigest()


def logged_in(state: ServerState) -> bool:
    """True when no token is needed, or the request carries a valid, unexpired session."""
    if state.token is None:
        return True
    expires_text, _, signature = request.cookies.get(SESSION_COOKIE, "").partition(".")
    if not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 12:
        return False
    expires = int(expires_text)
    if expires < time.time() or not signature.isascii():
        return False
    return hmac.compare_digest(signature, _signature(state, expires))


def token_ok(state: ServerState, given: str) -> bool:
    """Whether `given` is the server's token (constant time)."""
    if state.token is None:
        return True
    return hmac.compare_digest(given.strip().encode(), state.token.encode())


def start_session(state: ServerState, response: Response) -> None:
    """Set the session cookie on `response`."""
    expires = int(time.time()) + SESSION_SECONDS
    response.set_cookie(SESSION_COOKIE, f"{expires}.{_signature(state, expires)}",
                        max_age=SESSION_SECONDS, path="/", httponly=True, samesite="Strict",
                        secure=request.is_secure)


def end_session(response: Response) -> None:
    """Drop the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict",
                           secure=request.is_secure)


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


# -- CSRF -------------------------------------------------------------------------------
def csrf_token() -> str:
    """The request's CSRF token: the cookie's, or a new one (kept by keep_csrf_cookie)."""
    current = request.cookies.get(CSRF_COOKIE, "")
    if len(current) == 43 and current.replace("-", "").replace("_", "").isalnum():
        return current
    return secrets.token_urlsafe(32)


def keep_csrf_cookie(response: Response, token: str | None) -> None:
    """Set the CSRF cookie when the request did not carry this token already."""
    if token and request.cookies.get(CSRF_COOKIE) != token:
        # HttpOnly: pages get the token in their HTML, scripts never need the cookie
        response.set_cookie(CSRF_COOKIE, token, path="/", httponly=True, samesite="Strict",
                            secure=request.is_secure)


def check_post(expected: str) -> None:
    """403 unless this POST comes from this origin and echoes the CSRF cookie."""
    if not _same_origin():
        raise Forbidden("cross-site request refused (Origin is not this server)")
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or cookie != expected or not given.isascii() \
            or not hmac.compare_digest(given.encode(), cookie.encode()):
        raise Forbidden("missing or stale CSRF token: reload the page and try again")


def _same_origin() -> bool:
    """The Origin header (or the Referer's origin) names this server, or is absent.

    Absent: older clients and non-browsers send neither; the CSRF token still
    has to match, and SameSite=Strict keeps the session cookie off other sites.
    """
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return True
    parts = urlsplit(source)
    if not parts.netloc:
        return False  # "null" (sandboxed frames, file:) is never us
    # the host only: a proxy that ends TLS makes our scheme http while the
    # browser's Origin says https, and a scheme alone is no other site
    return parts.netloc.lower() == request.host.lower()
