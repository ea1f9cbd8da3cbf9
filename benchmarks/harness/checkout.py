"""A snapshot of the checkout's packages for one run.

Other people edit mlq/ and controller/ while a run goes on; copying them once at
the start means every pass of a run measures the same code. Imports nothing
from mlq, so run.py can take the snapshot before anything imports the library.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("mlq", "controller")


def snapshot(workdir: Path) -> Path:
    """Copy the packages into workdir/checkout; returns the folder to put on sys.path."""
    target = workdir / "checkout"
    for name in PACKAGES:
        if (REPO_DIR / name).is_dir():
            shutil.copytree(REPO_DIR / name, target / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def describe() -> str:
    """The commit benchmarked, and whether mlq/ or controller/ had uncommitted changes."""
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(REPO_DIR), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", *PACKAGES)
    return commit + (" + uncommitted changes in mlq/ or controller/" if dirty else "")
