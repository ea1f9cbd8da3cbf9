"""The dashboard's browser session and its protection against cross-site requests.

A browser cannot send the API's ``Authorization: Bearer`` header from a link or
a form, so the dashboard asks for the token once and keeps a session: a random
id in an HttpOnly (scripts cannot read it), SameSite=Strict (other sites'
requests do not carry it) cookie, and in Redis the session's scope under a
digest of that id, with an expiry. Every server process of the namespace shares
the sessions; logging out deletes the session for good, and changing either
token ends every session (each one records which tokens it was made under).

Every POST is also checked twice against cross-site forgery: its Origin (or
Referer) must be this server, and it must echo the page's CSRF token. With a
session, that token is an HMAC of the session id, so a token taken from one
session is worthless in any other; before login (the login form, or a server
without a token), it is the double-submit cookie's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import g, request
from werkzeug.exceptions import Forbidden
from werkzeug.wrappers import Response

from .helpers import ServerState
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
_TOKEN_SHAPE = 43  # len(secrets.token_urlsafe(32))


def _tokens_key(state: ServerState) -> bytes:
    # derived: a token itself is never an HMAC key for something else
    material = f"{state.token or ''}\0{state.admin_token or ''}".encode()
    return hmac.new(material, b"mlq dashboard session v3", hashlib.sha256).digest()


def _well_formed(value: str) -> bool:
    return len(value) == _TOKEN_SHAPE and value.replace("-", "").replace("_", "").isalnum() \
        and value.isascii()


def _redis_key(state: ServerState, session_id: str) -> str:
    # a digest: whoever reads Redis learns no cookie that would log them in
    return state.mlq.keys.session(hashlib.sha256(session_id.encode()).hexdigest())


def _tokens_mark(state: ServerState) -> str:
    return hmac.new(_tokens_key(state), b"tokens", hashlib.sha256).hexdigest()[:32]


def _session(state: ServerState) -> tuple[str, str] | None:
    """(session id, scope) of the request's live session; read from Redis once per request."""
    if "mlq_session" in g:
        return g.mlq_session  # type: ignore[no-any-return]
    found = None
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if _well_formed(session_id):
        stored = state.mlq.client.get(_redis_key(state, session_id))
        scope, _, mark = (stored or b"").decode().partition(":")
        if scope in (USER, ADMIN) and hmac.compare_digest(mark, _tokens_mark(state)):
            found = (session_id, scope)
    g.mlq_session = found
    return found


def session_scope(state: ServerState) -> str | None:
    """The scope of the request's valid, unexpired session; None without one."""
    session = _session(state)
    return session[1] if session else None


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


def secure_cookies(state: ServerState) -> bool:
    """Mark cookies Secure: TLS here, or ended by a proxy in front (--behind_tls)."""
    return state.behind_tls or request.is_secure


def start_session(state: ServerState, response: Response, scope: str) -> None:
    """Store a new session in Redis and set its cookie on `response`."""
    session_id = secrets.token_urlsafe(32)
    state.mlq.client.set(_redis_key(state, session_id), f"{scope}:{_tokens_mark(state)}",
                         ex=SESSION_SECONDS)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=SESSION_SECONDS, path="/",
                        httponly=True, samesite="Strict", secure=secure_cookies(state))


def end_session(state: ServerState, response: Response) -> None:
    """Delete the request's session from Redis (it can never be used again) and its cookie."""
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if _well_formed(session_id):
        state.mlq.client.delete(_redis_key(state, session_id))
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict",
                           secure=secure_cookies(state))


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
def csrf_token(state: ServerState, *, login_form: bool = False) -> str:
    """The request's CSRF token: derived from its session, else (and always for the
    login form, which comes before any session) the double-submit cookie's, or a
    new one, which keep_csrf_cookie sets."""
    session = _session(state) if not login_form and admin_token(state) is not None else None
    if session is not None:
        return hmac.new(_tokens_key(state), f"csrf:{session[0]}".encode(),
                        hashlib.sha256).hexdigest()
    current = request.cookies.get(CSRF_COOKIE, "")
    return current if _well_formed(current) else secrets.token_urlsafe(32)


def keep_csrf_cookie(state: ServerState, response: Response, token: str | None) -> None:
    """Set the double-submit cookie when the page's token is not the cookie's yet."""
    if token and _well_formed(token) and request.cookies.get(CSRF_COOKIE) != token:
        # HttpOnly: pages get the token in their HTML, scripts never need the cookie
        response.set_cookie(CSRF_COOKIE, token, path="/", httponly=True, samesite="Strict",
                            secure=secure_cookies(state))


def check_post(expected: str) -> None:
    """403 unless this POST comes from this origin and echoes the page's CSRF token."""
    if not _same_origin():
        raise Forbidden("cross-site request refused (Origin is not this server)")
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    if _well_formed(expected) and request.cookies.get(CSRF_COOKIE, "") != expected:
        given = ""  # a double-submit token counts only with its cookie
    if not given.isascii() or not hmac.compare_digest(given.encode(), expected.encode()):
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
