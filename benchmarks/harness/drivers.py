"""Runs one system's driver (benchmarks/peers/drive.py) in that system's venv and
reads back its JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procs
from .systems import System
from .venvs import PEERS_DIR, driver_env, python_for


@dataclass
class Settings:
    jobs: int
    round_trips: int
    scenarios: tuple[str, ...]
    drain_timeout: float  # per drain, so one stuck peer costs a bounded time
    startup_timeout: float  # for a worker's first job


def run(system: System, redis_url: str, settings: Settings, workdir: Path,
        tag: str) -> dict[str, Any]:
    """One pass of every scenario for `system`; {"error": ...} when the driver failed."""
    folder = workdir / f"{system.key}-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "result.json"
    config = {
        "module": system.module, "redis_url": redis_url, "jobs": settings.jobs,
        "round_trips": settings.round_trips, "scenarios": list(settings.scenarios),
        "drain_timeout": settings.drain_timeout, "startup_timeout": settings.startup_timeout,
        "workdir": str(folder), "out": str(out),
    }
    config_path = folder / "config.json"
    config_path.write_text(json.dumps(config))
    # The driver's whole budget: each drain is bounded, plus slack for the rest.
    budget = 2 * settings.drain_timeout + 3 * settings.startup_timeout + 120
    log_path = folder / "driver.log"
    with open(log_path, "ab") as log:
        group = procs.Group([str(python_for(system)), str(PEERS_DIR / "drive.py"), str(config_path)],
                            driver_env(system, {}), log, cwd=str(PEERS_DIR))
        code = group.wait(budget)
        group.stop()
    if code is None:
        return {"error": f"driver still running after {budget:.0f} s; stopped ({log_path})"}
    if code != 0 or not out.exists():
        return {"error": f"driver exited with {code}:\n{_tail(log_path)}"}
    return json.loads(out.read_text())


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
