"""What a benchmark script of its own (benchmarks/lifecycle.py, streaming.py) shares:
a private server for its measurement, every process it started stopped on the way
out (Ctrl-C and SIGTERM included), and its section of docs/benchmarks.md."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import Any, Callable, NoReturn

from . import procs
from .report import replace_section
from .server import private_redis


def _interrupt(*_: Any) -> NoReturn:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def measure_on_private_redis(name: str, measure: Callable[[str, Path], list[str]]) -> list[str]:
    """The lines `measure(redis_url, workdir)` reports, printed and returned."""
    procs.mark_this_process()
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix=f"mlq-{name}-") as folder:
        workdir = Path(folder)
        try:
            with private_redis(workdir / "redis") as server:
                lines = measure(server.url, workdir)
        finally:
            procs.stop_all()
    print("\n" + "\n".join(lines))
    return lines


def write_section(docs: str, name: str, body: str) -> None:
    """Set the kept section `name` of `docs`/benchmarks.md ('' for no docs)."""
    if docs:
        page = Path(docs) / "benchmarks.md"
        page.write_text(replace_section(page.read_text(), name, body))
        print(f"written to {page}")
