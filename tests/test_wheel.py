"""The built wheel installs the way a user installs it, and works (SPEC §1).

The wheel goes into a brand-new virtual environment that sees nothing of the
one this suite runs in; its dependencies are resolved by pip from the package
index under the project's constraints file, as `pip install mlq-*.whl` would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "constraints.txt"

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

LISTENERS = """
def double(msg, *args):
    return msg["n"] * 2
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without anything that points Python at the suite's own packages."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("MLQ_")}
    env.update(extra)
    return env


def run(*args: object, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run a command; on failure, fail the test with its output instead of a bare exit code."""
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env=env or clean_env(), timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the built wheel and the dependencies pip resolved for it."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    # Build from a copy: the checkout stays clean, and no stale build/ folder
    # can slip files into the wheel that the sources no longer have.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", "venv", "test-artifacts"))
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, src,
        cwd=tmp_path)
    (wheel,) = dist.glob("mlq-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
        "-c", CONSTRAINTS, wheel, cwd=tmp_path)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "wheel_listeners.py").write_text(LISTENERS)
    return env_dir


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_carries_its_lua_and_console_script(installed: Path) -> None:
    python = installed / "bin" / "python"
    work = installed.parent / "work"
    found = json.loads(run(python, "-c", PROBE, cwd=work))
    site = (installed / "lib").resolve()
    assert Path(found["mlq"]).resolve().is_relative_to(site)
    assert Path(found["controller"]).resolve().is_relative_to(site)

    expected = sorted(p.name for p in (REPO / "mlq" / "lua").glob("*.lua"))
    assert expected, "the repository has no mlq/lua/*.lua"
    assert found["lua"] == expected

    controller = installed / "bin" / "controller"
    assert "consumer" in run(controller, "--help", cwd=work)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_runs_a_post_and_wait_round_trip(installed: Path, redis_url: str,
                                               namespace: str) -> None:
    controller = installed / "bin" / "controller"
    work = installed.parent / "work"
    env = clean_env(PYTHONPATH=str(work), MLQ_REDIS_URL=redis_url, MLQ_NAMESPACE=namespace)
    consumer = subprocess.Popen([str(controller), "consumer", "--import", "wheel_listeners:double"],
                                cwd=work, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    try:
        done = subprocess.run([str(controller), "post", '{"n": 21}', "--wait"], cwd=work,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (done.stdout, done.stderr)
        job_id, short_result = done.stdout.split()
        assert job_id == "1"
        assert short_result == "42"
    finally:
        consumer.terminate()
        _, err = consumer.communicate(timeout=30)
    assert consumer.returncode == 0, err
