"""The Docker Compose files under examples/deploy/ and docs/DEPLOY.md: what a user
who copies them relies on.

Docker is not available to the suite, so the containers are not started.
Instead each part is checked against the real thing it configures: the
`controller` command lines against the command's own option parser, the
healthchecks against a real `controller server`, and the Valkey and Sentinel
command lines and sentinel.conf against the real Valkey server the suite runs
(8.1, as the files' image), on loopback.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from controller.server import check_bind
from mlq.embedded import find_server_binary, free_port
from mlq.keys import Keys
from tests.conftest import wait_until
from tests.deploy_files import (
    COMPOSE_FILES,
    DEPLOY,
    DOC,
    REPO,
    USER_VARIABLES,
    Server,
    all_envvars,
    compose,
    controller_services,
    envvars,
    parse,
    pings,
    required_variables,
    seconds,
    service_environment,
)


# -- compose: the command lines, the environment, the healthchecks ------------------------
@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_controller_command_in_compose_is_accepted(name: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    services = controller_services(name)
    assert {"server", "worker", "reaper"} <= set(services), sorted(services)
    for service, spec in services.items():
        env = service_environment(spec)
        command, params = parse(spec["command"], env, monkeypatch)
        # a variable the command does not read would be silently ignored
        unread = {n for n in env if n.startswith("MLQ_")} - envvars(command)
        assert not unread, f"{name} {service}: {command.name} does not read {unread}"
        assert params["redis_url"] == env["MLQ_REDIS_URL"], service
        if command.name == "server":
            # binding beyond loopback without a token: the server would refuse to start
            check_bind(params["server_address"], params["token"], params["insecure"])
        if command.name == "consumer":
            # the job must be put back before Docker's SIGKILL, not killed with it
            assert params["grace_period"] is not None, service
            assert params["grace_period"] < seconds(spec["stop_grace_period"]), service
            assert params["wait_for_redis"] is not None, service
            assert spec["deploy"]["replicas"] >= 1


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_builds_mlq_from_the_repository_dockerfile(name: str) -> None:
    for service, spec in controller_services(name).items():
        context = (DEPLOY / spec["build"]["context"]).resolve()
        assert context == REPO and (context / "Dockerfile").is_file(), service
        # the image has no ENTRYPOINT, so `command` is the whole command line
        assert "ENTRYPOINT" not in (REPO / "Dockerfile").read_text()


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_variables_the_user_must_set_are_explained(name: str) -> None:
    required = required_variables((DEPLOY / name).read_text())
    assert required == set(USER_VARIABLES), required
    doc = DOC.read_text()
    for variable in required:
        assert f"export {variable}=" in doc or f"{variable}=$(" in doc, variable


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_redis_keeps_an_append_only_file(name: str) -> None:
    data_nodes = {svc: spec for svc, spec in compose(name)["services"].items()
                  if spec.get("command", [None])[0] == "valkey-server"}
    assert data_nodes
    for service, spec in data_nodes.items():
        args = spec["command"]
        assert args[args.index("--appendonly") + 1] == "yes", service
        assert args[args.index("--appendfsync") + 1] in ("everysec", "always"), service
        # the data outlives the container
        assert any(v.endswith(":/data") for v in spec["volumes"]), service


def test_compose_redis_command_line_starts_valkey_with_aof_on(tmp_path: Path) -> None:
    """The Redis service's command line, run by the suite's Valkey on loopback: it
    starts, and AOF is on."""
    args = compose("compose.yaml")["services"]["redis"]["command"]
    port = free_port()
    process = subprocess.Popen([find_server_binary(), *args[1:], "--port", str(port),
                                "--bind", "127.0.0.1", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis("127.0.0.1", port, socket_timeout=2)
        wait_until(lambda: pings(client), 15, "Valkey to answer")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert (tmp_path / "appendonlydir").is_dir()
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_healthchecks(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    # what a service inherits unless it says otherwise: a probe of the HTTP server
    assert "HEALTHCHECK" in dockerfile and ":5000/healthz" in dockerfile
    for service, spec in controller_services(name).items():
        command, params = parse(spec["command"], service_environment(spec), monkeypatch)
        if command.name == "server" or params.get("server"):
            test = " ".join(spec["healthcheck"]["test"])
            assert f"http://127.0.0.1:{params['server_port']}/healthz" in test, service
        else:
            # no HTTP server in this container: the inherited check would fail forever
            assert spec["healthcheck"] == {"disable": True}, service


def test_compose_server_healthcheck_passes_only_while_redis_answers(
        redis_url: str, tmp_path: Path) -> None:
    """The healthcheck command itself, run against a real server started with the
    compose settings: exit 0 with Redis, non-zero without."""
    spec = compose("compose.yaml")["services"]["server"]
    test = spec["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"], test
    env = {**service_environment(spec), "MLQ_NAMESPACE": f"d_{uuid.uuid4().hex[:12]}"}
    for reachable in (True, False):
        url = redis_url if reachable else f"redis://127.0.0.1:{free_port()}/0"
        server = Server(spec["command"], {**env, "MLQ_REDIS_URL": url},
                        tmp_path / f"server-{reachable}.log")
        try:
            probe = [sys.executable,
                     *[arg.replace(":5000/", f":{server.port}/") for arg in test[2:]]]
            done = subprocess.run(probe, capture_output=True, timeout=30)
        finally:
            server.stop()
        assert (done.returncode == 0) == reachable, (reachable, done.stderr.decode())


# -- the Sentinel variant -------------------------------------------------------------------
def sentinel_parts() -> dict[str, Any]:
    """The Sentinel variant's pieces: data nodes, sentinels, their config, the URL."""
    services = compose("compose.sentinel.yaml")["services"]
    data = {s: spec["command"] for s, spec in services.items()
            if spec.get("command", [None])[0] == "valkey-server"}
    sentinels = {}
    for service, spec in services.items():
        command = spec.get("command", [])
        if command[:2] == ["sh", "-c"] and "--sentinel" in command[2]:
            script = command[2]
            copy = re.search(r"cp (\S+) (\S+);", script)
            assert copy, script
            run = shlex.split(script.split("exec ", 1)[1])
            assert run[0] == "valkey-server" and run[1] == copy.group(2), script
            mount = {v.split(":")[1]: v.split(":")[0] for v in spec["volumes"]}
            sentinels[service] = {"template": DEPLOY / mount[copy.group(1)], "args": run[2:],
                                  "healthcheck": spec["healthcheck"]["test"],
                                  "data": copy.group(2).rsplit("/", 1)[0] in mount}
    url = services["server"]["environment"]["MLQ_REDIS_URL"]
    return {"services": services, "data": data, "sentinels": sentinels, "url": url}


def sentinel_url(url: str) -> tuple[list[tuple[str, int]], str]:
    match = re.fullmatch(r"redis\+sentinel://([^/]+)/([^/]+)(?:/\d+)?", url)
    assert match, url
    hosts = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in match.group(1).split(",")]
    return hosts, match.group(2)


def test_sentinel_url_names_the_sentinels_and_master_the_file_defines() -> None:
    parts = sentinel_parts()
    hosts, master = sentinel_url(parts["url"])
    sentinels = parts["sentinels"]
    assert {h for h, _ in hosts} == set(sentinels) and len(sentinels) == 3
    for service, sentinel in sentinels.items():
        config = sentinel["template"].read_text()
        port = int(re.search(r"^port (\d+)$", config, re.M).group(1))
        assert all(p == port for _, p in hosts)
        assert sentinel["healthcheck"][-1] == "ping" and str(port) in sentinel["healthcheck"]
        # every sentinel keeps the config it rewrites in a volume of its own
        assert sentinel["data"], service
        # known by its name, not by an address that changes when it is recreated
        assert sentinel["args"] == ["--sentinel", "announce-ip", service]
        assert "sentinel resolve-hostnames yes" in config
        assert "sentinel announce-hostnames yes" in config
        name, host, data_port, quorum = re.search(
            r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", config, re.M).groups()
        # the URL's master is the one the sentinels watch, and it is a server of the file
        assert name == master and host in parts["data"] and data_port == "6379"
        assert len(sentinels) // 2 < int(quorum) <= len(sentinels)
    first = parts["data"][host]
    assert "--replicaof" not in first
    for service, args in parts["data"].items():
        assert args[args.index("--replica-announce-ip") + 1] == service
        assert args[args.index("--appendonly") + 1] == "yes"
        if service != host:
            i = args.index("--replicaof")
            assert args[i + 1:i + 3] == [host, data_port], service
    assert len(parts["data"]) == 3


def test_sentinel_servers_wait_for_two_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = sentinel_parts()
    spec = parts["services"]["server"]
    command, params = parse(spec["command"], service_environment(spec), monkeypatch)
    assert command.name == "server" and params["min_replicas"] == 1
    # a replica must be there to confirm: there are two
    assert len(parts["data"]) - 1 > params["min_replicas"]


@pytest.fixture
def sentinel_topology(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The Sentinel variant's servers and sentinels, run as its files say, on loopback:
    each service name becomes `localhost` and each port a free one."""
    parts = sentinel_parts()
    ports = {name: free_port() for name in [*parts["data"], *parts["sentinels"]]}
    loopback = ["--bind", "127.0.0.1", "-::1", "--daemonize", "no"]

    def localize(tokens: list[str]) -> list[str]:
        out = []
        for i, token in enumerate(tokens):
            if token in ports:
                out.append("localhost")
            elif i and tokens[i - 1] in parts["data"] and token == "6379":
                out.append(str(ports[tokens[i - 1]]))
            else:
                out.append(token)
        return out

    processes: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], folder: Path) -> subprocess.Popen[bytes]:
        with open(folder / "log", "wb") as log:  # the child keeps its own copy
            return subprocess.Popen(argv, cwd=folder, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)

    try:
        for name, args in parts["data"].items():
            folder = tmp_path / name
            folder.mkdir()
            # a replica's first sync waits 5 s for others by default; not worth waiting for here
            processes.append(start(
                [find_server_binary(), *localize(args[1:]), "--port", str(ports[name]),
                 "--dir", str(folder), "--repl-diskless-sync-delay", "0", *loopback], folder))
        for name, sentinel in parts["sentinels"].items():
            folder = tmp_path / name
            folder.mkdir()
            lines = []
            for line in sentinel["template"].read_text().splitlines():
                tokens = line.split()
                if tokens[:1] == ["port"]:
                    tokens = ["port", str(ports[name])]
                lines.append(" ".join(localize(tokens)) if not line.startswith("#") else line)
            config = folder / "sentinel.conf"
            config.write_text("\n".join(lines) + "\n")
            processes.append(start(
                [find_server_binary(), str(config), *localize(sentinel["args"]), *loopback],
                folder))
        hosts, master = sentinel_url(parts["url"])
        sentinels = ",".join(f"127.0.0.1:{ports[h]}" for h, _ in hosts)
        url = f"redis+sentinel://{sentinels}/{master}"
        yield {"parts": parts, "ports": ports, "url": url, "master": master}
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_sentinel_files_run_a_master_replicas_and_sentinels_the_server_reaches(
        sentinel_topology: dict[str, Any], tmp_path: Path) -> None:
    parts, ports = sentinel_topology["parts"], sentinel_topology["ports"]
    data = {name: redis.Redis("127.0.0.1", ports[name], socket_timeout=2)
            for name in parts["data"]}
    for name, client in data.items():
        wait_until(lambda c=client: pings(c), 15, f"{name} to answer")
        assert client.config_get("appendonly") == {"appendonly": "yes"}, name
    (first,) = [n for n, args in parts["data"].items() if "--replicaof" not in args]

    def replicas_online() -> int:
        info = data[first].info("replication")
        return sum(1 for k, v in info.items()
                   if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online")

    wait_until(lambda: replicas_online() == len(data) - 1, 20, "the replicas' first sync")
    for name in parts["sentinels"]:
        sentinel = redis.Redis("127.0.0.1", ports[name], socket_timeout=2, decode_responses=True)
        wait_until(lambda s=sentinel: pings(s), 15, f"{name} to answer")
        host, port = sentinel.execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinel_topology["master"])
        # announce-hostnames: the master by its name (here `localhost`), on its port
        assert (host, int(port)) == ("localhost", ports[first]), name

    # the server as the file runs it, through the file's URL form, with --min_replicas 1
    spec = parts["services"]["server"]
    namespace = f"d_{uuid.uuid4().hex[:12]}"
    env = {**service_environment(spec), "MLQ_REDIS_URL": sentinel_topology["url"],
           "MLQ_NAMESPACE": namespace}
    server = Server(spec["command"], env, tmp_path / "server.log")
    try:
        wait_until(lambda: requests.get(server.url + "/healthz", timeout=5).status_code == 200,
                   15, "the server to reach the master through the sentinels")
        token = USER_VARIABLES["MLQ_TOKEN"]
        response = requests.post(server.url + "/jobs", json={"msg": "hello"}, timeout=10,
                                 headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        job_key = Keys(namespace).job(response.text.strip())
        # answered only once a replica held it: it is on one already
        assert any(data[n].exists(job_key) for n in data if n != first), job_key
    finally:
        server.stop()


# -- the page itself -------------------------------------------------------------------------
def doc_command_lines() -> list[list[str]]:
    """Every `controller ...` invocation in DEPLOY.md's code blocks, split as a shell would."""
    found = []
    for block in re.findall(r"```\w*\n(.*?)```", DOC.read_text(), re.S):
        for line in block.splitlines():
            if "controller" not in line:
                continue
            line = line.removeprefix("ExecStart=")
            words = shlex.split(line, comments=True)
            starts = [i for i, w in enumerate(words)
                      if w == "controller" or w.endswith("/controller")]
            if starts:
                words = words[starts[0]:]
                ends = [i for i, w in enumerate(words) if w in ("&", "&&", "|", ";")]
                found.append(words[:ends[0]] if ends else words)
    return found


def test_every_controller_command_on_the_page_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = doc_command_lines()
    assert len(lines) >= 2, lines
    for argv in lines:
        parse(argv, {}, monkeypatch)


def test_systemd_unit_stops_jobs_before_it_kills() -> None:
    unit = next(block for block in re.findall(r"```ini\n(.*?)```", DOC.read_text(), re.S)
                if "ExecStart=" in block)
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line)
    grace = shlex.split(settings["ExecStart"])
    assert float(grace[grace.index("--grace_period") + 1]) < float(settings["TimeoutStopSec"])
    assert Path(grace[0]).is_absolute()  # systemd wants an absolute path


def test_every_variable_on_the_page_is_one_a_command_reads() -> None:
    named = set(re.findall(r"\bMLQ_[A-Z_]+\b", DOC.read_text()))
    assert {"MLQ_REDIS_URL", "MLQ_SECRET", "MLQ_TOKEN"} <= named
    assert named <= all_envvars(), named - all_envvars()
