"""How busy the machine is with other people's work, from /proc/stat.

Other sessions share this machine. Before each system's pass the harness waits a
little for a quiet moment (bounded) and records how busy the CPUs were, so a
report can say how much foreign load its numbers carry.
"""

from __future__ import annotations

import time


def _ticks() -> tuple[int, int]:
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]), idle


def busy(window: float = 0.3) -> float:
    """Share of all CPUs busy over `window` seconds (0..1)."""
    total0, idle0 = _ticks()
    time.sleep(window)
    total1, idle1 = _ticks()
    spent = total1 - total0
    return 0.0 if spent <= 0 else 1.0 - (idle1 - idle0) / spent


def wait_for_quiet(threshold: float = 0.25, limit: float = 5.0) -> float:
    """Wait until the CPUs are under `threshold` busy, `limit` seconds at most;
    returns the last reading. Nothing of ours runs while it measures."""
    deadline = time.monotonic() + limit
    reading = busy()
    while reading > threshold and time.monotonic() < deadline:
        reading = busy()
    return reading
