"""How records, events and functions are turned into bytes and back.

Records are Redis hashes whose values are each msgpack, so a Lua step can
rewrite one field (status, progress) without touching a large result, and
bytes stay bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

import msgpack

from . import defaults
from .errors import InvalidMessage

class ApartResult(NamedTuple):
    """A result to keep in a key of its own: its bytes, and "bytes" or "str" (UTF-8)."""

    data: bytes
    type: str

    @property
    def marker(self) -> bytes:
        """The packed value the record keeps instead (record.STORED_RESULT)."""
        return pack({"size": len(self.data), "type": self.type})


def pack_result(value: Any) -> bytes | ApartResult:
    """A result as its record keeps it (msgpack), or, for bytes or str of
    defaults.STORED_APART bytes or more, as an ApartResult (never packed: a
    copy of tens of MB less)."""
    if isinstance(value, str) and len(value) * 4 >= defaults.STORED_APART:
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError as exc:  # msgpack refuses them too
            raise InvalidMessage(f"cannot be stored as msgpack: {exc}") from exc
        if len(data) >= defaults.STORED_APART:
            return ApartResult(data, "str")
    elif (isinstance(value, (bytes, bytearray, memoryview))
          and memoryview(value).nbytes >= defaults.STORED_APART):
        return ApartResult(bytes(value), "bytes")
    return pack(value)


def apart_value(data: bytes, marker: Mapping[str, Any]) -> bytes | str:
    """The result an ApartResult stored: `data` read back from its key."""
    return data.decode("utf-8") if marker.get("type") == "str" else data


def pack(value: Any) -> bytes:
    """msgpack one value; InvalidMessage when msgpack cannot hold it."""
    try:
        return msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidMessage(f"cannot be stored as msgpack: {exc}") from exc


def unpack(data: bytes | None) -> Any:
    if data is None:
        return None
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def pack_fields(fields: Mapping[str, Any]) -> list[bytes | str]:
    """Flatten {field: value} into the field, packed-value list the Lua steps take."""
    flat: list[bytes | str] = []
    for name, value in fields.items():
        flat.append(name)
        flat.append(pack(value))
    return flat


def decode_event(data: bytes) -> dict[str, Any]:
    """A published job event: msgpack [id, status, progress?, record?]."""
    values = list(unpack_from_lua(data)) + [None, None]
    return {"id": str(values[0]), "status": values[1], "progress": values[2]}


def unpack_raw_from_lua(data: bytes) -> Any:
    """What a Lua step packed, every string as the bytes it holds: a record's
    values are msgpack themselves, decoded once by record_from_hash."""
    return msgpack.unpackb(data, raw=True, strict_map_key=False)


def unpack_from_lua(data: bytes) -> Any:
    """What a Lua step packed. Lua's msgpack writes binary values (a record's) as
    strings: their bytes are kept (surrogateescape)."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False,
                           unicode_errors="surrogateescape")


def to_json_text(value: Any) -> str:
    """The compact JSON text short_result uses for structured outcomes (SPEC §3)."""
    return json.dumps(value, separators=(",", ":"), default=str)
