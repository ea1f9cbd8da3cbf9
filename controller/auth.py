"""Bearer-token checks and signed result links (SPEC §7, §9).

The check runs in `before_request`, after routing but before any view, so a
request without credentials is refused before its body is read, parsed or
(for POST /consumer) unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from flask import Flask, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, TooManyRequests, Unauthorized

from mlq.errors import JobNotFound
from mlq.signing import sign_text, verify_text

from .helpers import ServerState, current_state

#: Endpoints anyone may call: a load balancer's health probe has no token.
PUBLIC_ENDPOINTS = frozenset({"ops.healthz"})
#: Endpoints a signed link opens (a browser following a link sends no header).
RESULT_ENDPOINTS = frozenset({"jobs.result", "jobs.result_ext"})
#: Endpoints that need the admin scope: they change which code workers run, what
#: happens to failed jobs, or what happens to everyone's jobs (a whole queue
#: cancelled or paused), rather than post and read jobs.
ADMIN_ENDPOINTS = frozenset({
    "consumer.register", "consumer.unregister",
    "deadletter.requeue_all", "deadletter.requeue_one", "deadletter.purge_all",
    "deadletter.purge_one", "lifecycle.cancel_many", "lifecycle.pause", "lifecycle.resume",
})
#: Longest link lifetime we sign: 30 days; beyond that a link is a second password.
MAX_LINK_TTL = 30 * 24 * 3600
_SIG_LENGTH = 64  # hex SHA-256


#: Shortest token accepted at start-up: a short one falls to guessing, throttle or not.
MIN_TOKEN_LENGTH = 16


def check_token_strength(token: str | None, flag: str) -> None:
    """ValueError naming `flag` for a token shorter than MIN_TOKEN_LENGTH."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"{flag} must be at least {MIN_TOKEN_LENGTH} characters long "
                         f"(it has {len(token)}); make one with: python -c 'import secrets; "
                         "print(secrets.token_urlsafe(24))'")


class FailureThrottle:
    """Failed credentials per client address: past `limit` in `window` seconds, the
    address gets 429 until its oldest failure leaves the window.

    Kept in this process's memory (a bounded number of addresses): the check must
    cost nothing on the requests that carry good credentials.
    """

    def __init__(self, limit: int = 10, window: float = 60.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.max_clients, self.clock = limit, window, max_clients, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again; None when it may now."""
        failures = self._failures.get(client)
        if failures is None:
            return None
        now = self.clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + self.window - now))

    def record(self, client: str) -> None:
        failures = self._failures.setdefault(client, deque(maxlen=self.limit))
        failures.append(self.clock())
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)


def install(app: Flask) -> None:
    """Check credentials before every request of `app`."""
    app.before_request(check_request)


def client_address() -> str:
    return request.remote_addr or "?"


def note_failure(state: ServerState) -> None:
    """Count a bad credential of this request's address; 429 with Retry-After when
    the address had sent too many already (else the caller answers 401)."""
    client = client_address()
    wait = state.throttle.retry_after(client)
    state.throttle.record(client)
    if wait is not None:
        raise TooManyRequests(f"too many failed attempts from this address: try again in "
                              f"{wait} s", retry_after=wait)


def check_request() -> None:
    """Raise 401 unless the request carries what its endpoint needs; 429 instead once
    its address sent too many bad credentials lately (good ones always pass)."""
    if request.endpoint in PUBLIC_ENDPOINTS or request.blueprint == "dashboard":
        return  # the dashboard checks its own session cookie (controller/dashsession.py)
    state = current_state()
    try:
        _check_credentials(state)
    except Unauthorized:
        note_failure(state)
        raise


def _check_credentials(state: ServerState) -> None:
    if request.endpoint in ADMIN_ENDPOINTS:
        _check_admin(state)
        return
    if _bearer_ok(state.token) or _bearer_ok(state.admin_token):
        return
    if request.endpoint in RESULT_ENDPOINTS and _has_link_params():
        # a link is checked even without a token, so an expired link never
        # looks valid to the person who shared it
        if not _link_ok(state):
            raise _unauthorized("invalid or expired link")
        return
    if state.token is not None:
        raise _unauthorized("missing or wrong bearer token (Authorization: Bearer <token>)")


def _unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message, www_authenticate=WWWAuthenticate("bearer", {"realm": "mlq"}))


def admin_token(state: ServerState) -> str | None:
    """The token that opens the admin scope: the admin token, else the one token."""
    return state.admin_token or state.token


def _check_admin(state: ServerState) -> None:
    required = admin_token(state)
    if required is None or _bearer_ok(required):
        return
    if _bearer_ok(state.token):
        raise Forbidden("this needs the admin token (--admin_token / MLQ_ADMIN_TOKEN)")
    raise _unauthorized("missing or wrong bearer token (Authorization: Bearer <admin token>)")


def _bearer_ok(token: str | None) -> bool:
    if token is None:
        return False
    auth = request.authorization
    if auth is None or auth.type != "bearer" or not auth.token:
        return False
    return hmac.compare_digest(auth.token.encode(), token.encode())


def _has_link_params() -> bool:
    return "sig" in request.args or "expires" in request.args


def canonical_id(job_id: str) -> str | None:
    """The id as the library stores it ("007" is job 7); None when not a job id."""
    if not (job_id.isascii() and job_id.isdigit()) or len(job_id) > 20:
        return None
    return str(int(job_id))


def _link_text(state: ServerState, job_id: str, expires: int) -> str | None:
    """What a link signs: the namespace, the job, the job's own random value (so a
    link dies with its job, even when `clear_all` lets the id come again) and the
    expiry. None when there is no such job."""
    try:
        salt = state.mlq.get_job(job_id, fields=("link_salt",))["link_salt"] or ""
    except JobNotFound:
        return None
    return f"result:{state.mlq.namespace}:{job_id}:{salt}:{expires}"


def _namespace_key(state: ServerState) -> bytes:
    # one key per namespace: a link minted for one namespace opens nothing in another
    return hmac.new(state.link_key, f"namespace:{state.mlq.namespace}".encode(),
                    hashlib.sha256).digest()


def sign_link(state: ServerState, job_id: str, expires: int) -> str:
    """The `sig` of a result link for `job_id` valid until `expires` (epoch seconds)."""
    text = _link_text(state, job_id, expires)
    if text is None:
        raise JobNotFound(f"no job {job_id!r}")
    return sign_text(_namespace_key(state), text)


def _link_ok(state: ServerState) -> bool:
    expires_text = request.args.get("expires", "")
    signature = request.args.get("sig", "")
    job_id = canonical_id(str((request.view_args or {}).get("job_id", "")))
    # shape checks first: compare_digest refuses non-ASCII text with a TypeError
    if job_id is None or not (expires_text.isascii() and expires_text.isdigit()):
        return False
    if len(expires_text) > 12 or len(signature) != _SIG_LENGTH or not signature.isascii():
        return False
    expires = int(expires_text)
    if expires < time.time() or expires > time.time() + MAX_LINK_TTL:
        return False
    text = _link_text(state, job_id, expires)
    return text is not None and verify_text(_namespace_key(state), text, signature)
