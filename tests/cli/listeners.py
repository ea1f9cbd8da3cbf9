"""Listener functions that `controller consumer --import tests.cli.listeners:NAME` loads."""

from __future__ import annotations

import time
from typing import Any


def double(msg: Any, *args: Any) -> Any:
    """Twice the message: 21 -> 42, "ab" -> "abab"."""
    return msg * 2


def nap(msg: Any, *args: Any) -> str:
    """Sleeps `msg` seconds: a job that is still running when the consumer is told to stop."""
    time.sleep(float(msg))
    return f"slept {msg}"
