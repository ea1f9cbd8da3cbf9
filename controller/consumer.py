"""/consumer: upload, remove and list listener functions (SPEC §3, §7, §9).

The wire format is the original's, ``jsonpickle.encode(cloudpickle.dumps(f))``,
i.e. ``{"py/b64": "<base64 of the pickle>"}``, optionally with ``"name"`` and
``"signature"``. The server never unpickles an upload, not even to learn its
name: the name comes from the request, or is read from the pickle's opcodes.
The body is read with the json module only: ``jsonpickle.decode`` would run any
``py/reduce`` smuggled in. With a shared secret, the uploader signs the pickle
(``X-MLQ-Signature: sha256=<hex>``); the server checks that signature and stores
it, and never signs anything itself.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, request

from mlq.uploads import Upload, read_envelope, upload_name
from mlq.signing import SIGNATURE_HEADER

from .helpers import current_state, json_response, read_json_body, text_response


bp = Blueprint("consumer", __name__)


def _upload() -> Upload:
    # A JSON body, said so: a page on another origin can then only send it after a
    # CORS preflight, which this server never grants.
    if request.mimetype != "application/json":
        abort(415, description="send the function as Content-Type: application/json")
    upload = read_envelope(read_json_body())
    header = request.headers.get(SIGNATURE_HEADER)
    return Upload(upload.payload, upload.name, header or upload.signature)


@bp.post("/consumer")
def register() -> Response:
    """Register the uploaded function for every worker of the namespace; answers True."""
    upload = _upload()
    current_state().mlq.store_upload(upload, upload_name(upload, request.args.get("name")))
    return text_response("True")


@bp.delete("/consumer")
def unregister() -> Response:
    """Unregister by ``?name=`` or by the uploaded function (original format); True or False."""
    name = request.args.get("name") or upload_name(_upload())
    return text_response(str(bool(current_state().mlq.remove_listener(name))))


@bp.get("/consumer")
def names() -> Response:
    """The registered function names, in registration order."""
    return json_response(current_state().mlq.listener_names())
