"""The built wheel carries the Lua scripts and the console script (SPEC §1)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Run inside the fresh venv, from a directory outside the checkout, so the
# installed copy is imported and not the source tree.
PROBE = """
import json, pathlib, mlq, controller
lua = pathlib.Path(mlq.__file__).parent / "lua"
print(json.dumps({
    "mlq": mlq.__file__,
    "controller": controller.__file__,
    "lua": sorted(p.name for p in lua.glob("*.lua")),
}))
"""


def run(*args: object, cwd: Path) -> str:
    """Run a command; on failure, fail the test with its output instead of a bare exit code."""
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_installs_lua_and_console_script(tmp_path: Path) -> None:
    # Build from a copy: the checkout stays clean, and no stale build/ folder
    # can slip files into the wheel that the sources no longer have.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", "venv"))
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, src, cwd=tmp_path)
    (wheel,) = dist.glob("mlq-*.whl")

    # System site packages supply the dependencies, so nothing is downloaded.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    run(python, "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-index", wheel, cwd=tmp_path)

    found = json.loads(run(python, "-c", PROBE, cwd=tmp_path))
    site = (env_dir / "lib").resolve()
    assert Path(found["mlq"]).resolve().is_relative_to(site)
    assert Path(found["controller"]).resolve().is_relative_to(site)

    expected = sorted(p.name for p in (REPO / "mlq" / "lua").glob("*.lua"))
    assert expected, "the repository has no mlq/lua/*.lua"
    assert found["lua"] == expected
    assert (env_dir / "bin" / "controller").is_file()
