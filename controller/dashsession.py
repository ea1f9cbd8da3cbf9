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
from .auth import admin_token
from .origin import names_this_server

SESSION_COOKIE = "mlq_session"
CSRF_COOKIE = "mlq_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
#: How long a login lasts: a working week; asking for the token every day
#: would push people to paste it somewhere convenient instead.
SESSION_SECONDS = 7 * 24 * 3600


#: What a session may do: read and post, or also change code and dead letters.
USER, ADMIN = "user", "admin"


def _session_key(state: ServerState) -> bytes:
    # derived: a token itself is never an HMAC key for something else; changing
    # either token ends every session
    material = f"{state.token or ''}\0{state.admin_token or ''}".encode()
    return hmac.new(material, b"mlq dashboard session v2", hashlib.sha256).digest()


def _signature(state: ServerState, scope: str, expires: int) -> str:
    return hmac.new(_session_key(state), f"session:{scope}:{expires}".encode(),
                    hashlib.sha256).hexdigest()


def session_scope(state: ServerState) -> str | None:
    """The scope of the request's valid, unexpired session cookie; None without one."""
    expires_text, _, rest = request.cookies.get(SESSION_COOKIE, "").partition(".")
    scope, _, signature = rest.partition(".")
    if not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 12:
        return None
    expires = int(expires_text)
    if scope not in (USER, ADMIN) or expires < time.time() or not signature.isascii():
        return None
    return scope if hmac.compare_digest(signature, _signature(state, scope, expires)) else None


def logged_in(state: ServerState) -> bool:
    """True when no token is needed to look, or the request carries a valid session."""
    return state.token is None or session_scope(state) is not None


def is_admin(state: ServerState) -> bool:
    """Whether this browser may change code and dead letters."""
    return admin_token(state) is None or session_scope(state) == ADMIN


def token_scope(state: ServerState, given: str) -> str | None:
    """The scope `given` opens (constant-time compares); None when it is no token of ours."""
    given_bytes = given.strip().encode()
    if admin_token(state) is None:
        return ADMIN
    if state.admin_token and hmac.compare_digest(given_bytes, state.admin_token.encode()):
        return ADMIN
    if state.token and hmac.compare_digest(given_bytes, state.token.encode()):
        return USER if state.admin_token else ADMIN
    return None


def start_session(state: ServerState, response: Response, scope: str) -> None:
    """Set the session cookie on `response`."""
    expires = int(time.time()) + SESSION_SECONDS
    response.set_cookie(SESSION_COOKIE, f"{expires}.{scope}.{_signature(state, scope, expires)}",
                        max_age=SESSION_SECONDS, path="/", httponly=True, samesite="Strict",
                        secure=request.is_secure)


def end_session(response: Response) -> None:
    """Drop the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict",
                           secure=request.is_secure)


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this server, never another site (else /ui)."""
    # Control characters and spaces are refused before parsing: urlsplit drops some
    # of them, and a check made on what it returns would pass "/\n/evil.example".
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target)):
        return "/ui"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/ui"
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
    return names_this_server(source)
