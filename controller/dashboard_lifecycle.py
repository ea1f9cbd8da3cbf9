"""The dashboard's part of a job's wider life (docs/lifecycle.md): cancelling a job,
pausing a queue, and the periodic jobs' page.

Routes of the dashboard blueprint itself (dashboard.py calls `register`), so the
login and CSRF guard in front of every dashboard POST covers them too. Each
action answers 303 to a page that shows the outcome, with a message picked from
a fixed table by a word in the URL: no page shows text taken from a URL.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from mlq.errors import InvalidMessage
from mlq.job import DEFERRED, QUEUED, SCHEDULED, STARTED

from . import stream_routes
from .auth import canonical_id
from .helpers import current_state, jsonable
from .overview import ago

#: Statuses a job can still be cancelled in: anything that has not ended.
CANCELLABLE = (QUEUED, SCHEDULED, DEFERRED, STARTED)
#: Longest message text the add-schedule form takes (the library checks the size
#: of what it stores too; this keeps a pasted file out of the page shown back).
MAX_FORM_MSG = 64 * 1024
_JOB_DONE = {"cancelled": "Job cancelled: it will not run.",
             "stopping": "Asked the running job to stop; it ends as cancelled.",
             "ended": "The job had already ended; nothing was cancelled."}
_SCHEDULE_DONE = {"added": "Schedule saved.", "removed": "Schedule removed.",
                  "missing": "That schedule was already gone."}


def register(bp: Blueprint) -> None:
    """Add this module's routes and template helpers to the dashboard blueprint."""
    bp.add_url_rule("/ui/jobs/<job_id>/cancel", "cancel_job", cancel_job, methods=["POST"])
    bp.add_url_rule("/ui/queues/<queue>/pause", "pause_queue", pause_queue, methods=["POST"])
    bp.add_url_rule("/ui/queues/<queue>/resume", "resume_queue", resume_queue,
                    methods=["POST"])
    bp.add_url_rule("/ui/schedules", "schedules_page", schedules_page)
    bp.add_url_rule("/ui/schedules", "schedule_add", schedule_add, methods=["POST"])
    bp.add_url_rule("/ui/schedules/<name>/remove", "schedule_remove", schedule_remove,
                    methods=["POST"])
    # the job page's streamed output: the API's route, under the dashboard's login
    bp.add_url_rule("/ui/jobs/<job_id>/stream", "job_stream", stream_routes.stream)
    bp.add_app_template_filter(until, "until")
    bp.add_app_template_filter(progress_cell, "progress_cell")


def progress_cell(job: dict[str, Any]) -> str:
    """A job list's progress: a number as a percentage, what else a listener reports
    as it is (cut short), a dash for a job not running."""
    status, progress = job.get("status"), job.get("progress")
    if status == "completed":
        return "100 %"
    if status != "started":
        return "—"
    if progress is None:
        return "0 %"
    if isinstance(progress, (int, float)) and not isinstance(progress, bool):
        return f"{progress:g} %"
    return str(progress)[:40]


def until(epoch: float | None) -> str:
    """`in 5 min` or `3.2 s ago`: how far a time is from now, either way."""
    if not isinstance(epoch, (int, float)):
        return "—"
    delta = epoch - time.time()
    return f"in {ago(delta)}" if delta >= 0 else f"{ago(-delta)} ago"


def job_notice() -> str | None:
    """The job page's message after a cancel, if the URL names one."""
    return _JOB_DONE.get(request.args.get("done", ""))


# -- cancel -----------------------------------------------------------------------------
def cancel_job(job_id: str) -> Response:
    """Cancel a waiting job, or ask a running one to stop; back to its page."""
    mlq = current_state().mlq
    was = mlq.get_job(job_id)["status"]  # JobNotFound: the 404 page
    if not mlq.cancel(job_id):
        done = "ended"
    else:
        done = "stopping" if was == STARTED else "cancelled"
    return redirect(url_for("dashboard.job_page", job_id=canonical_id(job_id) or job_id,
                            done=done), code=303)


# -- pause ------------------------------------------------------------------------------
def pause_queue(queue: str) -> Response:
    """Workers take nothing from `queue` until it is resumed."""
    current_state().mlq.pause(queue)  # a bad name is InvalidName: the 400 page
    return _back_to_overview()


def resume_queue(queue: str) -> Response:
    """Workers take from `queue` again."""
    current_state().mlq.resume(queue)
    return _back_to_overview()


def _back_to_overview() -> Response:
    # the overview is cached for a second: without this the page we send the
    # browser to could still show the queue as it was
    source = current_state().extras.get("overview")
    if source is not None:
        source.invalidate()
    return redirect(url_for("dashboard.overview_page"), code=303)


# -- schedules --------------------------------------------------------------------------
def schedules_page() -> str:
    """The periodic jobs, with a form to add one and a button to remove each."""
    return _schedules_view(notice=_SCHEDULE_DONE.get(request.args.get("done", "")))


def schedule_add() -> Response | str:
    """Add (or replace) a schedule; a bad cron, zone, name or message shows the form
    again with the library's reason, having stored nothing."""
    form = {field: request.form.get(field, "").strip()
            for field in ("name", "cron", "msg", "queue", "timezone", "functions")}
    try:
        msg = _form_msg(form["msg"])
        functions = [f.strip() for f in form["functions"].split(",") if f.strip()] or None
        current_state().mlq.schedule(form["name"], form["cron"], msg,
                                     queue=form["queue"] or "default",
                                     timezone=form["timezone"] or "UTC", functions=functions)
    except InvalidMessage as exc:  # InvalidName too
        page = _schedules_view(error=str(exc), form=form)
        return current_app.response_class(page, status=400, mimetype="text/html")
    return redirect(url_for("dashboard.schedules_page", done="added"), code=303)


def _form_msg(text: str) -> Any:
    """The form's message: JSON when it parses as JSON, else the text itself."""
    if not text:
        raise InvalidMessage("give the message each run posts (JSON, or plain text)")
    if len(text) > MAX_FORM_MSG:
        raise InvalidMessage(f"the message is over {MAX_FORM_MSG // 1024} KiB")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def schedule_remove(name: str) -> Response:
    """Stop a schedule; the jobs it already posted stay."""
    removed = current_state().mlq.unschedule(name)
    return redirect(url_for("dashboard.schedules_page", done="removed" if removed else "missing"),
                    code=303)


def _schedules_view(*, notice: str | None = None, error: str | None = None,
                    form: dict[str, str] | None = None) -> str:
    mlq = current_state().mlq
    entries = mlq.schedules()
    for entry in entries:
        entry["msg_text"] = json.dumps(jsonable(entry["msg"]), ensure_ascii=False)
    return render_template("schedules.html", schedules=entries, notice=notice, error=error,
                           form=form or {"queue": "default", "timezone": "UTC"},
                           queues=mlq.queue_names())

