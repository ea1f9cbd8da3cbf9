"""Reading the deployment files under examples/deploy/ and docs/DEPLOY.md, and the real
parts they are checked against: the `controller` option parser and `controller server`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest
import redis
import requests
import yaml

from controller.cli import cli
from mlq.embedded import free_port

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "examples" / "deploy"
DOC = REPO / "docs" / "DEPLOY.md"
COMPOSE_FILES = ("compose.yaml", "compose.sentinel.yaml")
#: What the user exports before `docker compose up` (DEPLOY.md); any real values.
USER_VARIABLES = {"MLQ_TOKEN": "a-token-of-at-least-16-chars", "MLQ_SECRET": "a-shared-secret"}
#: The Secret `mlq` that kubernetes.yaml reads (DEPLOY.md's kubectl line).
K8S_SECRET = {"token": "a-token-of-at-least-16-chars", "secret": "a-shared-secret"}


# -- reading the files ----------------------------------------------------------------
def compose(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / name).read_text())


def kubernetes() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if doc]


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in kubernetes() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container(deployment: str) -> dict[str, Any]:
    (only,) = k8s_object("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return only


_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` and `$$`, as Compose reads them."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, kind, rest = match.groups()
        if name in variables and variables[name] != "":
            return variables[name]
        assert kind != "?", f"compose stops here unless ${name} is set: {rest}"
        return rest if kind == "-" else ""

    return _VARIABLE.sub(one, value)


def required_variables(text: str) -> set[str]:
    return {m.group(1) for m in _VARIABLE.finditer(text) if m.group(2) == "?"}


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v), USER_VARIABLES) for k, v in env.items()}


def k8s_environment(spec: dict[str, Any], redis_url: str) -> dict[str, str]:
    env = {}
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "mlq", item
            env[item["name"]] = redis_url if ref["key"] == "redis-url" else K8S_SECRET[ref["key"]]
    return env


def controller_services(name: str) -> dict[str, dict[str, Any]]:
    return {svc: spec for svc, spec in compose(name)["services"].items()
            if spec.get("command", [None])[0] == "controller"}


def seconds(duration: str | int) -> float:
    """A Compose duration (`30s`, `1m30s`) in seconds."""
    if isinstance(duration, int):
        return duration
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, duration
    h, m, s = (int(p or 0) for p in parts.groups())
    return h * 3600 + m * 60 + s


# -- the real command line --------------------------------------------------------------
def parse(argv: list[str], env: dict[str, str],
          monkeypatch: pytest.MonkeyPatch) -> tuple[click.Command, dict[str, Any]]:
    """Parse `controller ...` exactly as the command would in that environment; the
    command and its parameters (a bad flag or value raises click's usage error)."""
    assert argv[0] == "controller" or argv[0].endswith("/controller"), argv
    for name in [n for n in os.environ if n.startswith("MLQ_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    group = cli.make_context("controller", list(argv[1:]))
    name, command, rest = cli.resolve_command(group, list(argv[1:]))
    assert command is not None, argv
    return command, command.make_context(name or "", rest, parent=group).params


def envvars(command: click.Command) -> set[str]:
    found = set()
    for param in command.params:
        names = param.envvar if isinstance(param.envvar, (list, tuple)) else [param.envvar]
        found |= {n for n in names if n}
    return found


def all_envvars() -> set[str]:
    commands = []
    for command in cli.commands.values():
        group = isinstance(command, click.Group)
        commands += list(command.commands.values()) if group else [command]
    return set().union(*(envvars(c) for c in commands))


def with_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """`argv` with `--flag`'s value replaced (or the flag added)."""
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


# -- real servers -------------------------------------------------------------------------
class Server:
    """`controller server` as a subprocess, started with given flags and environment."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        # loopback only in the suite, whatever the file binds
        argv = with_flag(with_flag(argv, "--server_address", "127.0.0.1"),
                         "--server_port", str(self.port))
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MLQ_")}
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "controller", *argv[1:]], cwd=REPO,
                env={**clean, **env}, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT)
        self.log = log
        deadline = time.monotonic() + 30
        while True:  # a subprocess gives no event to await: poll until it answers at all
            try:
                requests.get(self.url + "/healthz", timeout=3)
                return
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"server did not start:\n{log.read_text()}") from None
                time.sleep(0.05)  # the pause between two polls

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


