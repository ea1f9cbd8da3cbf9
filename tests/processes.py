"""The live processes, read from /proc: the fault tests and the doc snippets' runner
look for what a command started, wherever it went."""

from __future__ import annotations

import os
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (state, parent, group, ...); None once
    the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: split after the last ')'
    return text[text.rindex(")") + 2:].split()


def live_processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live process (zombies left out)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None and fields[0] not in ("Z", "X"):
                table[int(entry)] = (int(fields[1]), int(fields[2]))
    return table
