"""The web dashboard: overview, jobs, workers, dead letters, functions (and, in
dashboard_lifecycle.py, cancel, pause and schedules).

Server-rendered Jinja pages plus one small script (static/app.js) that refetches
the page's live region every few seconds, so counts move without a reload and
there is no JSON API to keep in step with the templates. No build step, no CDN.

Auth: the API's bearer token cannot come from a browser link or form, so with a
token set the dashboard asks for it once (controller/dashsession.py) and keeps
an HttpOnly, SameSite=Strict session cookie; every POST here also carries a
CSRF token and must come from this origin. controller/auth.py leaves this
blueprint's routes to that check.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from mlq.errors import JobNotFound
from mlq.job import STATUSES, TERMINAL
from mlq.listing import MAX_PAGE
from mlq.record import CALL_FIELD

from . import dashboard_lifecycle, dashsession, overview
from .display import job_matches, short_ids
from .helpers import ServerState, current_state, handle_error, jsonable
from .auth import admin_token, canonical_id, note_failure, sign_link

bp = Blueprint("dashboard", __name__, template_folder="templates",
               static_folder="static", static_url_path="/ui/static")
# cancel, pause and the schedules page: same blueprint, so the same guard
dashboard_lifecycle.register(bp)

#: Jobs per page of the jobs list.
PAGE_SIZE = 25
#: Milliseconds between refreshes of a page's live region.
REFRESH_MS = 2000
#: Lifetime of the signed result links a job page embeds (img, audio, download).
PREVIEW_LINK_TTL = 3600
#: Largest text or JSON result shown inline; the rest is behind the download link.
PREVIEW_CHARS = 64 * 1024
#: Magic numbers of the binary results a browser can show or play.
_SNIFF: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image", "png"), (b"\xff\xd8\xff", 0, "image", "jpg"),
    (b"GIF8", 0, "image", "gif"), (b"WEBP", 8, "image", "webp"),
    (b"WAVE", 8, "audio", "wav"), (b"ID3", 0, "audio", "mp3"), (b"\xff\xfb", 0, "audio", "mp3"),
    (b"\xff\xf3", 0, "audio", "mp3"), (b"OggS", 0, "audio", "ogg"), (b"fLaC", 0, "audio", "flac"),
)
#: Dashboard actions that need the admin scope (as their API routes do).
ADMIN_ENDPOINTS = frozenset({"dashboard.requeue_all", "dashboard.requeue_one",
                             "dashboard.purge_all", "dashboard.purge_one",
                             "dashboard.pause_queue", "dashboard.resume_queue"})
#: What a dead-letter action's redirect may report, so no page shows text from a URL.
_DONE = {"requeued": "Requeued {n} job(s).", "purged": "Purged {n} job(s).",
         "missing": "Job {id} is no longer a dead letter."}


# -- request plumbing -------------------------------------------------------------------
@bp.before_request
def guard() -> Response | None:
    """Login (when the server has a token) and CSRF checks for every dashboard route."""
    state = current_state()
    login_form = request.endpoint in ("dashboard.login", "dashboard.login_post")
    g.csrf = dashsession.csrf_token(state, login_form=login_form)
    if login_form or request.endpoint == "dashboard.static":
        pass  # styles and the login form itself need no session
    elif not dashsession.logged_in(state):
        if request.method == "GET":
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
        abort(401, description="log in to the dashboard first")
    if request.method == "POST":
        dashsession.check_post(g.csrf)
        if request.endpoint in ADMIN_ENDPOINTS and not dashsession.is_admin(state):
            abort(403, description="log in with the admin token to change dead letters "
                                   "or pause queues")
    return None


@bp.after_request
def headers(response: Response) -> Response:
    """Keep the CSRF cookie, and lock pages down (no framing, own scripts only)."""
    dashsession.keep_csrf_cookie(current_state(), response, g.get("csrf"))
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; media-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"  # counts and CSRF tokens go stale
    return response


@bp.errorhandler(Exception)
def page_error(exc: Exception) -> Response:
    """The app's JSON answer, shown as a page: same status, same message."""
    answer = handle_error(exc)
    message = json.loads(answer.get_data(as_text=True)).get("error", "error")
    page = render_template("error.html", status=answer.status_code, message=message)
    response = current_app.response_class(page, status=answer.status_code, mimetype="text/html")
    if isinstance(exc, HTTPException) and "Allow" in answer.headers:
        response.headers["Allow"] = answer.headers["Allow"]
    return response


@bp.app_template_filter("ago")
def _ago(epoch: float | None) -> str:
    return overview.ago(None if epoch is None else time.time() - epoch)


@bp.app_template_filter("last_line")
def _last_line(text: str | None) -> str:
    """The last non-empty line of a traceback: the exception and its message."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


@bp.context_processor
def _page_globals() -> dict[str, Any]:
    state = current_state()
    return {"namespace": state.mlq.namespace, "csrf": g.get("csrf", ""),
            "auth": state.token is not None, "refresh_ms": REFRESH_MS, "fmt": overview,
            "statuses": STATUSES}


# -- pages ------------------------------------------------------------------------------
@bp.get("/")
def overview_page() -> str:
    """Counts per queue and in total, jobs per second, workers, the latest jobs."""
    state = current_state()
    frame = _source(state).get()
    _, latest = state.mlq.list_jobs(limit=10)
    return render_template("overview.html", frame=frame, latest=latest,
                           columns=overview.ALL_COLUMNS,
                           chart=overview.history_chart(state.mlq.listing.history()))


@bp.get("/ui")
def ui_root() -> Response:
    """/ui is the overview too."""
    return redirect(url_for("dashboard.overview_page"))


@bp.get("/ui/jobs")
def jobs_page() -> str | Response:
    """Jobs newest first, filtered by ``status`` and ``queue``, ``page`` by page."""
    mlq = current_state().mlq
    wanted = (request.args.get("id") or "").strip()
    if wanted:  # the search box: straight to the job (its page says when there is none)
        return redirect(url_for("dashboard.job_page", job_id=wanted))
    status = request.args.get("status") or None
    queue = request.args.get("queue") or None
    owner = request.args.get("owner") or None
    function = request.args.get("function") or None
    page = _page_number(request.args.get("page"))
    # a status that does not exist is InvalidMessage: 400, shown by page_error
    if owner is None and function is None:
        total, jobs = mlq.list_jobs(status, queue, offset=(page - 1) * PAGE_SIZE,
                                    limit=PAGE_SIZE)
    else:  # no index of owners or functions: the newest jobs, filtered here
        picked = [r for r in mlq.list_jobs(status, queue, 0, MAX_PAGE)[1]
                  if job_matches(r, owner, function)]
        total, jobs = len(picked), picked[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    return render_template("jobs.html", jobs=jobs, total=total, page=page, pages=pages,
                           status=status, queue=queue, owner=owner, function=function,
                           scanned=MAX_PAGE, queues=mlq.queue_names())


def _page_number(text: str | None) -> int:
    if not text:
        return 1
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 10 ** 9:
        abort(400, description="page must be a positive whole number")
    return int(text)


@bp.get("/ui/jobs/<job_id>")
def job_page(job_id: str) -> str:
    """One job: its record, progress, error and a preview of its result."""
    state = current_state()
    job = state.mlq.get_job(job_id)
    preview, msg_text = _preview(state, job), _pretty(job["msg"])
    if job.get(CALL_FIELD):  # a submitted call: its msg and result are pickles, never
        # loaded here; the client wrote the call's text, the worker the result's
        msg_text = (f"{job['call_name']}({job.get('call_args') or ''})" if job.get("call_name")
                    else "a submitted call, pickled (posted before calls were named)")
        if preview and preview["kind"] == "bytes":
            preview = {"kind": "text", "text": job["short_result"] or "", "cut": False}
    return render_template("job.html", job=job, live=job["status"] not in TERMINAL,
                           progress=_progress_percent(job), preview=preview,
                           msg_text=msg_text,
                           notice=dashboard_lifecycle.job_notice(),
                           cancellable=job["status"] in dashboard_lifecycle.CANCELLABLE)


def _progress_percent(job: dict[str, Any]) -> float | None:
    """The progress bar's width; None when the listener reports something else."""
    if job["status"] == "completed":
        return 100.0
    value = job["progress"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None
    return float(min(value, 100))


def _preview(state: ServerState, job: dict[str, Any]) -> dict[str, Any] | None:
    """How the job page shows the result: image, audio, text, JSON or a download."""
    if job["status"] != "completed":
        return None
    value = job["result"]
    if isinstance(value, (bytes, bytearray)):
        kind, ext = _sniff(bytes(value))
        return {"kind": kind, "url": _result_url(state, job["id"], ext), "size": len(value)}
    if value is None:
        return {"kind": "none"}
    if isinstance(value, str):
        text, kind = value, "text"
    else:
        text, kind = _pretty(value), "json"
    return {"kind": kind, "text": text[:PREVIEW_CHARS], "cut": len(text) > PREVIEW_CHARS,
            "url": _result_url(state, job["id"], "txt" if kind == "text" else "json")}


def _sniff(data: bytes) -> tuple[str, str]:
    for magic, at, kind, ext in _SNIFF:
        if data[at:at + len(magic)] == magic:
            return kind, ext
    return "bytes", "bin"


def _result_url(state: ServerState, job_id: str, ext: str) -> str:
    # A signed link: an <img> or <audio> request carries the session cookie but
    # no bearer token, and the result routes accept a signed link instead.
    expires = int(time.time()) + PREVIEW_LINK_TTL
    canonical = canonical_id(job_id) or job_id
    return url_for("jobs.result_ext", job_id=canonical, ext=ext, expires=expires,
                   sig=sign_link(state, canonical, expires))


def _pretty(value: Any) -> str:
    text = json.dumps(jsonable(value), indent=2, ensure_ascii=False)
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "\n…"


@bp.get("/ui/workers")
def workers_page() -> str:
    """Workers grouped by process: host, pid, queues, functions, concurrency, GPUs,
    job, heartbeat age."""
    return render_template("workers.html", groups=overview.worker_groups(current_state().mlq))


@bp.get("/ui/deadletters")
def deadletters_page() -> str:
    """The dead letters, oldest first, with requeue and purge buttons."""
    done = _DONE.get(request.args.get("done", ""))
    message = done.format(n=request.args.get("n", "0")[:9], id=request.args.get("id", "")[:20]) \
        if done else None
    return render_template("deadletters.html", dead=current_state().mlq.dead_letters(),
                           message=message)


@bp.get("/ui/functions")
def functions_page() -> str:
    """Registered listener functions (name, stored size, when registered) and those live
    workers report (imported with `consumer --import`), each with the workers that run it."""
    mlq = current_state().mlq
    found = mlq.workers()
    rows = overview.function_rows(mlq.registry.info(), found)
    return render_template("functions.html", functions=rows,
                           short=short_ids(str(w["id"]) for w in found))


# -- dead-letter actions (POST forms, each confirmed in the page first) ------------------
@bp.post("/ui/deadletter/requeue")
def requeue_all() -> Response:
    """Requeue every dead letter."""
    return _done("requeued", current_state().mlq.requeue_dead())


@bp.post("/ui/deadletter/<job_id>/requeue")
def requeue_one(job_id: str) -> Response:
    """Requeue one dead letter."""
    try:
        return _done("requeued", current_state().mlq.requeue_dead(job_id))
    except JobNotFound:
        return _done("missing", 0, job_id)


@bp.post("/ui/deadletter/purge")
def purge_all() -> Response:
    """Delete every dead record."""
    return _done("purged", current_state().mlq.purge_dead())


@bp.post("/ui/deadletter/<job_id>/purge")
def purge_one(job_id: str) -> Response:
    """Delete one dead record."""
    try:
        return _done("purged", current_state().mlq.purge_dead(job_id))
    except JobNotFound:
        return _done("missing", 0, job_id)


def _done(what: str, count: int, job_id: str = "") -> Response:
    # 303: the browser follows with a GET, so a reload does not post again
    return redirect(url_for("dashboard.deadletters_page", done=what, n=count,
                            id=canonical_id(job_id) or None), code=303)


# -- login ------------------------------------------------------------------------------
@bp.get("/ui/login")
def login() -> Response | str:
    """The token form; straight on when no token is needed or the session is valid."""
    state = current_state()
    if dashsession.session_scope(state) is not None or admin_token(state) is None:
        return redirect(dashsession.safe_next(request.args.get("next")))
    return render_template("login.html", next=request.args.get("next", ""), error=None)


@bp.post("/ui/login")
def login_post() -> Response:
    """Check the token; on success set the session cookie and go where the user was going."""
    state = current_state()
    target = dashsession.safe_next(request.form.get("next"))
    scope = dashsession.token_scope(state, request.form.get("token", ""))
    if scope is None:
        note_failure(state)
        page = render_template("login.html", next=target, error="That is not the server's token.")
        return current_app.response_class(page, status=401, mimetype="text/html")
    response = redirect(target, code=303)
    dashsession.start_session(state, response, scope)
    return response


@bp.post("/ui/logout")
def logout() -> Response:
    """End the session (the cookie is dropped)."""
    response = redirect(url_for("dashboard.login"), code=303)
    dashsession.end_session(current_state(), response)
    return response


def _source(state: ServerState) -> overview.OverviewSource:
    """The app's one overview source: it keeps the rate history between requests."""
    source: overview.OverviewSource | None = state.extras.get("overview")
    if source is None:
        source = state.extras["overview"] = overview.OverviewSource(state.mlq)
    return source
