"""What the short commands print for people: aligned tables that fit a terminal,
worker ids shortened without becoming ambiguous, and binary values told by size
and type instead of pages of base64.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

#: Width the tables are cut to: the classic terminal, and what a pipe gets.
WIDTH = 80
#: Shortest id shown, as git's short hashes: shorter ones stop being readable.
MIN_SHORT_ID = 8
ELLIPSIS = "…"

#: Leading bytes of the formats a listener is likely to return, and their types.
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\x93NUMPY", "application/x-npy"),
    (b"ID3", "audio/mpeg"),
    (b"fLaC", "audio/flac"),
    (b"OggS", "audio/ogg"),
    (b"\x1aE\xdf\xa3", "video/webm"),
)
#: RIFF containers name their format at bytes 8-11.
RIFF_KINDS = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}


def guess_type(data: bytes) -> str:
    """The media type of `data` from its magic number; application/octet-stream
    when none is known."""
    head = bytes(data[:16])
    if head.startswith(b"RIFF") and head[8:12] in RIFF_KINDS:
        return RIFF_KINDS[head[8:12]]
    if head[4:8] == b"ftyp":  # ISO media: MP4, MOV, HEIC...
        return "video/mp4"
    for magic, media_type in MAGIC:
        if head.startswith(magic):
            return media_type
    return "application/octet-stream"


def summarize_bytes(value: Any) -> Any:
    """`value` with every bytes inside it (lists, tuples, dicts) replaced by
    {"bytes": size, "type": media type}."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return {"bytes": len(data), "type": guess_type(data)}
    if isinstance(value, (list, tuple)):
        return [summarize_bytes(item) for item in value]
    if isinstance(value, dict):
        return {key: summarize_bytes(item) for key, item in value.items()}
    return value


def short_ids(ids: Iterable[str], min_length: int = MIN_SHORT_ID) -> dict[str, str]:
    """Each id -> the shortest suffix or prefix (at least `min_length` characters)
    that no other of `ids` shares, marked with "…" where it was cut.

    Worker ids ("host:pid:s81b51795-c1") share their host and pid, so the
    suffix usually wins; an id no shorter form singles out is shown whole.
    """
    unique = sorted(set(ids))
    return {full: _shortest(full, [other for other in unique if other != full], min_length)
            for full in unique}


def _shortest(full: str, others: Sequence[str], min_length: int) -> str:
    for length in range(min_length, len(full)):
        suffix, prefix = full[-length:], full[:length]
        if not any(other.endswith(suffix) for other in others):
            return ELLIPSIS + suffix
        if not any(other.startswith(prefix) for other in others):
            return prefix + ELLIPSIS
    return full


def clip(text: str, width: int) -> str:
    """`text` cut to `width` characters, the cut marked with "…"."""
    if len(text) <= width:
        return text
    return text[:max(width - 1, 0)] + ELLIPSIS


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int = WIDTH,
          right: Iterable[int] = ()) -> str:
    """An aligned table (two spaces between columns) no wider than `width`.

    Columns keep their natural width while they fit; otherwise the widest is
    cut, one character at a time, so that short columns (ids, statuses,
    numbers) stay whole. `right` names the columns aligned right (numbers).
    """
    cells = [[str(h) for h in headers]] + [[" ".join(str(c).split()) for c in row]
                                           for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    budget = width - 2 * (len(headers) - 1)
    while sum(widths) > budget:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= 4:
            break  # nothing left worth cutting: better a long line than empty columns
        widths[widest] -= 1
    aligned = set(right)
    lines = []
    for row in cells:
        parts = [clip(cell, widths[i]).rjust(widths[i]) if i in aligned
                 else clip(cell, widths[i]).ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def job_matches(record: dict[str, Any], owner: str | None, function: str | None) -> bool:
    """Whether a listed job is `owner`'s and runs `function` (a name of its listeners,
    or a submitted call's name); None matches anything. Redis keeps no index of
    either, so listings filter a page they read (controller jobs, the dashboard)."""
    if owner is not None and record.get("owner") != owner:
        return False
    return function is None or function in (record.get("functions") or ()) \
        or function == record.get("call_name")
