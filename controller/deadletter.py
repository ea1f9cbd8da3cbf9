"""/deadletter: list, requeue and purge failed jobs (SPEC §2, §7).

An id that is not a dead letter raises JobNotFound in the library: 404 here.
"""

from __future__ import annotations

from flask import Blueprint, Response

from .helpers import current_state, json_response

bp = Blueprint("deadletter", __name__)


@bp.get("/deadletter")
def dead_letters() -> Response:
    """The dead records, oldest first."""
    return json_response(current_state().mlq.dead_letters())


@bp.post("/deadletter/requeue")
def requeue_all() -> Response:
    """Requeue every dead letter as a fresh attempt."""
    return json_response({"requeued": current_state().mlq.requeue_dead()})


@bp.post("/deadletter/<job_id>/requeue")
def requeue_one(job_id: str) -> Response:
    """Requeue one dead letter; 404 when it is not one."""
    return json_response({"requeued": current_state().mlq.requeue_dead(job_id)})


@bp.delete("/deadletter")
def purge_all() -> Response:
    """Delete every dead record."""
    return json_response({"purged": current_state().mlq.purge_dead()})


@bp.delete("/deadletter/<job_id>")
def purge_one(job_id: str) -> Response:
    """Delete one dead record; 404 when it is not one."""
    return json_response({"purged": current_state().mlq.purge_dead(job_id)})
