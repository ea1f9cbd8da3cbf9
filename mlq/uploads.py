"""Functions uploaded over the wire (POST /consumer, SPEC §9): the envelope they
arrive in, and the name they carry, read from the pickle without running it.
The server never unpickles an upload; workers do, once its signature checks.
"""

from __future__ import annotations

import base64
import binascii
import json
import pickletools
from dataclasses import dataclass
from typing import Any

from .errors import ListenerError
from .keys import check_function_name


@dataclass(frozen=True)
class Upload:
    """A function as it arrives over the wire: its pickle, and what the uploader said of it."""

    payload: bytes
    name: str | None = None
    signature: str | None = None  # hex HMAC-SHA256 of `payload`, made by the uploader


#: Keys the upload envelope may carry besides jsonpickle's own "py/b64".
_ENVELOPE_EXTRAS = ("name", "signature")


def read_envelope(obj: Any) -> Upload:
    """The upload inside `jsonpickle.encode(bytes)`'s ``{"py/b64": ...}`` envelope.

    Read with the json module only: jsonpickle.decode would run any py/reduce
    the envelope smuggles in. The envelope may also carry the function's
    ``name`` and the uploader's ``signature`` of the pickle.
    """
    if isinstance(obj, (str, bytes, bytearray)):
        try:
            obj = json.loads(obj)
        except ValueError as exc:
            raise ListenerError(f"not a JSON object: {exc}") from exc
    if not (isinstance(obj, dict) and "py/b64" in obj and isinstance(obj["py/b64"], str)
            and set(obj) <= {"py/b64", *_ENVELOPE_EXTRAS}
            and all(isinstance(obj.get(k, ""), str) for k in _ENVELOPE_EXTRAS)):
        raise ListenerError('expected {"py/b64": "<base64 of cloudpickle.dumps(f)>"'
                            ', optionally with "name" and "signature"}')
    try:
        payload = base64.b64decode(obj["py/b64"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ListenerError(f"py/b64 is not base64: {exc}") from exc
    return Upload(payload, obj.get("name") or None, obj.get("signature") or None)



_STRING_OPS = frozenset({"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
                         "STRING", "BINSTRING", "SHORT_BINSTRING"})


def _pickle_values(payload: bytes) -> list[Any]:
    """What each opcode of a pickle pushes: the text of string opcodes (memo
    look-ups resolved), the opcode's name for anything else. Nothing is built
    and no code runs."""
    memo: dict[int, Any] = {}
    values: list[Any] = []
    for opcode, arg, _ in pickletools.genops(payload):
        name = opcode.name
        if name in ("PROTO", "FRAME"):
            continue
        if name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
            memo[len(memo) if name == "MEMOIZE" else int(arg)] = values[-1] if values else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            values.append(memo.get(int(arg)))
        elif name in _STRING_OPS:
            values.append(str(arg))
        elif name == "GLOBAL":
            values.append(("GLOBAL", str(arg)))
        else:
            values.append((name,))
    return values


def name_from_pickle(payload: bytes) -> str | None:
    """A pickled function's ``__name__``, read from its opcodes without unpickling.

    Two shapes are known: a function pickled by reference (the whole pickle is
    one global: module and name) and cloudpickle's by-value form, whose state
    holds ``__name__`` right before ``__qualname__``. None when neither is there.
    """
    try:
        values = _pickle_values(payload)
    except Exception as exc:  # pickletools raises ValueError and others on garbage
        raise ListenerError(f"not a pickle: {exc}") from exc
    body = [v for v in values if v != ("STOP",)]
    if len(body) == 3 and body[2] == ("STACK_GLOBAL",) and all(isinstance(v, str) for v in body[:2]):
        return body[1].rsplit(".", 1)[-1]
    if len(body) == 1 and isinstance(body[0], tuple) and body[0][0] == "GLOBAL":
        return body[0][1].rsplit(" ", 1)[-1].rsplit(".", 1)[-1]
    for i in range(len(values) - 3):
        if (values[i] == "__name__" and isinstance(values[i + 1], str)
                and values[i + 2] == "__qualname__" and isinstance(values[i + 3], str)):
            return values[i + 1]
    return None


def upload_name(upload: Upload, given: str | None = None) -> str:
    """The name to register `upload` under: as given, else read from the pickle."""
    name = given or upload.name or name_from_pickle(upload.payload)
    if not name:
        raise ListenerError("cannot tell the function's name from the pickle: "
                            'give it as "name" in the body or ?name=')
    return check_function_name(name)
