"""One virtual environment per peer under benchmarks/.venvs/<key> (gitignored).

Peers never go into the project's requirements: each gets its own venv, so RQ's
redis 8 and MLQ 0.2.2's redis 2.10 never meet. A venv is reused while its
requirement list is unchanged (a stamp file records it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from .systems import System

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / "peers"
VENVS_DIR = BENCH_DIR / ".venvs"
STAMP = ".bench-requirements"
INSTALL_TIMEOUT = 900  # seconds; a cold pip cache on a slow mirror
#: Where MLQ is imported from: the checkout, or a run's snapshot of it (checkout.py).
MLQ_PATH = REPO_DIR
#: The chart's own venv: matplotlib stays out of the project and of the peers.
PLOT_REQUIREMENTS = ("matplotlib",)


def venv_python(name: str) -> Path:
    return VENVS_DIR / name / "bin" / "python"


def ensure(name: str, requirements: tuple[str, ...]) -> Path:
    """Create benchmarks/.venvs/<name> with `requirements` unless it already has them."""
    folder = VENVS_DIR / name
    stamp = folder / STAMP
    wanted = json.dumps(sorted(requirements))
    python = venv_python(name)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if folder.exists():
        shutil.rmtree(folder)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True,
                   capture_output=True, timeout=120)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *requirements],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if done.returncode != 0:
        # pip's warnings about unreachable local mirrors are noise; keep the real error
        lines = [ln for ln in (done.stderr + done.stdout).splitlines()
                 if "is ignored: it is neither a file nor a directory" not in ln]
        raise RuntimeError(f"pip install {' '.join(requirements)} failed:\n" + "\n".join(lines[-15:]))
    stamp.write_text(wanted)
    return python


def python_for(system: System) -> Path:
    return Path(sys.executable) if system.requirements is None else venv_python(system.key)


def ensure_all(systems: list[System], say: Callable[[str], None]) -> dict[str, str]:
    """Install every peer's venv (in parallel); returns {key: error} for those that failed."""
    wanted = [s for s in systems if s.requirements is not None]
    failures: dict[str, str] = {}

    def one(system: System) -> None:
        try:
            ensure(system.key, system.requirements or ())
        except Exception as exc:  # noqa: BLE001 - a peer that cannot install is reported, not fatal
            failures[system.key] = str(exc)

    say(f"venvs: {', '.join(s.key for s in wanted)} under {VENVS_DIR}")
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, wanted))
    for key, error in failures.items():
        say(f"  {key}: install failed: {error.splitlines()[0] if error else ''}")
    return failures


def driver_env(system: System, extra: dict[str, str]) -> dict[str, str]:
    """Environment of a system's driver and workers: only its own packages importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    paths = [str(PEERS_DIR)]
    if system.requirements is None:
        paths.append(str(MLQ_PATH))  # MLQ runs from this checkout
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env
