"""An image job: render the Mandelbrot set and return it as PNG bytes.

    python -m controller consumer --server --import examples.image.listeners:mandelbrot

MLQ stores bytes as they are, and its HTTP server serves them with the type the
URL's extension names, so http://127.0.0.1:5000/jobs/N/result.png opens as an image.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

MAX_SIDE = 4096  # pixels: a typo in a message should not ask for a gigapixel


def encode_png(pixels: np.ndarray) -> bytes:
    """An RGB PNG from an (height, width, 3) uint8 array, with only zlib and struct."""
    height, width, _ = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    # every scanline starts with its filter type; 0 is "none"
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, -1)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def mandelbrot(msg: dict[str, Any] | None, context: dict[str, Any]) -> tuple[str, bytes]:
    """`msg` may set `width` (480), `height` (320) and `max_iter` (80)."""
    options = msg or {}
    width = min(max(int(options.get("width", 480)), 1), MAX_SIDE)
    height = min(max(int(options.get("height", 320)), 1), MAX_SIDE)
    max_iter = min(max(int(options.get("max_iter", 80)), 1), 10_000)
    c = np.linspace(-2.2, 0.8, width)[None, :] + 1j * np.linspace(-1.2, 1.2, height)[:, None]
    z = np.zeros_like(c)
    escaped_at = np.full(c.shape, max_iter)
    for step in range(max_iter):
        inside = escaped_at == max_iter  # iterate only points still bounded: no overflow
        z[inside] = z[inside] ** 2 + c[inside]
        escaped_at[inside & (np.abs(z) > 2)] = step
        if step % 10 == 0:
            context["update_progress"](100 * step // max_iter)
    t = escaped_at / max_iter  # 0 escaped at once .. 1 never escaped (drawn black)
    # a smooth palette (Bernstein polynomials): dark blue far out, orange near the set
    rgb = np.stack([9 * (1 - t) * t ** 3, 15 * (1 - t) ** 2 * t ** 2, 8.5 * (1 - t) ** 3 * t],
                   axis=-1)
    png = encode_png((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    # (short_result, result): `controller post --wait` prints the short text
    return f"{width}x{height} PNG, {len(png)} bytes", png
