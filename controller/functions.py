"""/consumer: upload, remove and list listener functions (SPEC §3, §7, §9).

The wire format is the original's, ``jsonpickle.encode(cloudpickle.dumps(f))``,
i.e. ``{"py/b64": "<base64 of the pickle>"}``. The body is read with the json
module only: ``jsonpickle.decode`` would run any ``py/reduce`` smuggled in.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from mlq.listeners import bytes_from_envelope

from .app import current_state, json_response, text_response
from .jobs import read_json_body

bp = Blueprint("functions", __name__)


def _payload() -> bytes:
    # Parsed here rather than by bytes_from_envelope so that absurd nesting
    # (a RecursionError) is a 400 like any other malformed body.
    return bytes_from_envelope(read_json_body())


@bp.post("/consumer")
def register() -> Response:
    """Register the uploaded function for every worker of the namespace; answers True."""
    current_state().mlq.register_listener(_payload())
    return text_response("True")


@bp.delete("/consumer")
def unregister() -> Response:
    """Unregister by uploaded function (original format) or by ``?name=``; True or False."""
    mlq = current_state().mlq
    name = request.args.get("name")
    removed = mlq.remove_listener(name) if name else mlq.remove_listener(_payload())
    return text_response(str(bool(removed)))


@bp.get("/consumer")
def names() -> Response:
    """The registered function names, in registration order."""
    return json_response(current_state().mlq.listener_names())
