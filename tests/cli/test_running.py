"""The long-running commands as real subprocesses: consumer, server, reaper, embedded Redis."""

from __future__ import annotations

import signal
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from mlq.embedded import free_port, port_open
from mlq.queue import MLQ
from tests.conftest import fixed_ports, wait_until

from .conftest import Running, base_env, run_controller

pytestmark = pytest.mark.timeout(90)

Spawn = Callable[..., Running]
DOUBLE = ("--import", "tests.cli.listeners:double")
NAP = ("--import", "tests.cli.listeners:nap")

_gate = threading.Event()


def stuck(msg: Any, context: dict[str, Any]) -> str:
    """Holds its job until the test opens the gate (a job that runs too long)."""
    _gate.wait(30)
    return "released"


@pytest.fixture
def gate(queue: MLQ) -> Iterator[threading.Event]:
    """Depends on `queue`, so it is opened before the queue's consumer is shut down."""
    _gate.clear()
    yield _gate
    _gate.set()


def connection(redis_url: str, namespace: str) -> tuple[str, ...]:
    return ("--redis_url", redis_url, "--namespace", namespace)


def test_consumer_runs_imported_listeners_and_stops_on_sigterm(
        spawn: Spawn, redis_url: str, namespace: str, queue: MLQ) -> None:
    worker = spawn("consumer", *DOUBLE, "--concurrency", "2", *connection(redis_url, namespace))
    ids = [queue.post(n) for n in range(4)]
    assert [queue.wait(i, timeout=30)["result"] for i in ids] == [0, 2, 4, 6]
    assert worker.stop(signal.SIGTERM, timeout=15) == 0
    assert "SIGTERM" in worker.output and "Traceback" not in worker.output


def wait_until_started(queue: MLQ, job_id: str) -> None:
    events = queue.watch(job_id)
    try:
        assert next(e for e in events if e and e["status"] != "queued")["status"] == "started"
    finally:
        events.close()  # type: ignore[attr-defined]


def test_first_signal_lets_the_running_job_finish(
        spawn: Spawn, redis_url: str, namespace: str, queue: MLQ) -> None:
    worker = spawn("consumer", *NAP, *connection(redis_url, namespace))
    job_id = queue.post(1.5)
    wait_until_started(queue, job_id)
    assert worker.stop(signal.SIGTERM, timeout=20) == 0
    record = queue.get_job(job_id)
    assert (record["status"], record["result"]) == ("completed", "slept 1.5")


def test_second_signal_stops_at_once_and_the_job_is_not_lost(
        spawn: Spawn, redis_url: str, namespace: str, queue: MLQ) -> None:
    worker = spawn("consumer", *NAP, *connection(redis_url, namespace))
    job_id = queue.post(60)
    wait_until_started(queue, job_id)
    worker.process.send_signal(signal.SIGINT)
    worker.wait_for("send it again to stop now")
    assert worker.stop(signal.SIGINT, timeout=10) == 0
    record = queue.get_job(job_id)
    assert record["status"] in ("queued", "failed") and record["retries"] == 1, record


def test_a_cancelled_job_still_running_after_cancel_grace_is_stopped(
        spawn: Spawn, redis_url: str, namespace: str, queue: MLQ) -> None:
    worker = spawn("consumer", *NAP, "--cancel_grace", "0.5", *connection(redis_url, namespace))
    job_id = queue.post(60)  # a listener that never looks at cancelled()
    wait_until_started(queue, job_id)
    assert queue.cancel(job_id)
    record = queue.wait(job_id, timeout=8)  # the default grace (10 s) would time out
    assert (record["status"], record["error_kind"], record["retries"]) == (
        "cancelled", "cancelled", 0)
    assert queue.wait(queue.post(0), timeout=30)["result"] == "slept 0"  # a new child runs
    assert worker.stop(signal.SIGTERM, timeout=15) == 0


def test_consumer_with_server_and_reaper_stops_all_together(
        spawn: Spawn, redis_url: str, namespace: str, queue: MLQ) -> None:
    port = free_port()
    worker = spawn("consumer", *DOUBLE, "--server", "--server_port", str(port),
                   "--reaper", "--reaper-interval", "0.5", *connection(redis_url, namespace))
    worker.wait_for("reaper: sweeping every 0.5 s")
    worker.wait_for_port(port)
    health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert (health.status_code, health.text) == (200, "ok")
    posted = requests.post(f"http://127.0.0.1:{port}/jobs", json={"msg": 21}, timeout=5)
    assert queue.wait(posted.text.strip(), timeout=30)["result"] == 42
    assert worker.stop(signal.SIGTERM, timeout=20) == 0
    assert not port_open("127.0.0.1", port)  # the server process went with it
    assert "Traceback" not in worker.output


def test_consumer_stops_when_its_server_cannot_start(
        spawn: Spawn, redis_url: str, namespace: str) -> None:
    worker = spawn("consumer", *DOUBLE, "--server", "--server_address", "0.0.0.0",
                   *connection(redis_url, namespace))
    assert worker.process.wait(30) == 2
    assert "refusing to listen on '0.0.0.0'" in worker.output


def test_consumer_with_a_bad_import_is_a_usage_error(redis_url: str, namespace: str) -> None:
    done = run_controller("consumer", "--import", "tests.cli.nosuch:f",
                          *connection(redis_url, namespace))
    assert "--import" in done.assert_one_line_error()


@fixed_ports
def test_embedded_redis_when_none_is_named(spawn: Spawn, tmp_path: Path, namespace: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    taken = port_open("127.0.0.1", 6379)
    worker = spawn("consumer", *DOUBLE, "--namespace", namespace, env=base_env(HOME=str(home)))
    data_dir = home / ".local" / "share" / "mlq"
    if taken:  # someone's Redis is there: the consumer must use it, not start one
        worker.wait_for("worker process(es)")
    else:
        line = worker.wait_for("embedded server")
        assert str(data_dir) in line
        assert data_dir.is_dir()
        # a password only its owner can read: other local users cannot write the registry
        password_file = data_dir / "password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((data_dir / "mlq-server.conf").stat().st_mode) == 0o600
        with pytest.raises(redis.RedisError, match="(?i)auth"):
            redis.Redis(host="127.0.0.1", port=6379, password=None).ping()
        # a one-shot command of the same user falls back to the embedded default too
        posted = run_controller("post", "20", "--wait", "--namespace", namespace,
                                env=base_env(HOME=str(home)))
        assert posted.rc == 0 and posted.out.split() == ["1", "40"], posted.err
    url = "redis://127.0.0.1:6379/0" if taken else \
        f"redis://:{(data_dir / 'password').read_text().strip()}@127.0.0.1:6379/0"
    queue = MLQ(namespace, redis_url=url)
    try:
        assert queue.wait(queue.post(21), timeout=30)["result"] == 42
        queue.clear_all()
    finally:
        queue.client.close()
    assert worker.stop(signal.SIGINT, timeout=20) == 0
    assert worker.output.count("embedded server") == (0 if taken else 1)
    assert port_open("127.0.0.1", 6379) == taken  # ours stopped with the consumer


def test_server_alone(spawn: Spawn, redis_url: str, namespace: str, queue: MLQ) -> None:
    port = free_port()
    server = spawn("server", "--server-port", str(port), "--max-body", "1K",
                   *connection(redis_url, namespace))
    server.wait_for_port(port)
    queue.post("waiting")
    assert requests.get(f"http://127.0.0.1:{port}/jobs/count", timeout=5).text == "1"
    too_big = requests.post(f"http://127.0.0.1:{port}/jobs", json={"msg": "x" * 2000}, timeout=5)
    assert too_big.status_code == 413
    assert server.stop(signal.SIGTERM, timeout=15) == 0
    assert not port_open("127.0.0.1", port)
    assert "MonkeyPatchWarning" not in server.output  # gevent patched before any import


@pytest.mark.parametrize("flag", ["--token", "--admin_token"])
def test_server_refuses_a_short_token(redis_url: str, flag: str) -> None:
    for command in (("server",), ("consumer", "--server")):
        done = run_controller(*command, flag, "fifteen-chars-x", "--redis_url", redis_url)
        assert "at least 16 characters" in done.assert_one_line_error()


def test_server_refuses_a_public_address_without_a_token(redis_url: str) -> None:
    done = run_controller("server", "--server_address", "0.0.0.0", "--redis_url", redis_url)
    assert "without an API token" in done.assert_one_line_error()


def test_reaper_alone_recovers_a_job_that_runs_too_long(
        spawn: Spawn, redis_url: str, namespace: str, queue: MLQ,
        gate: threading.Event) -> None:
    queue.create_listener(stuck)
    job_id = queue.post("hold")
    wait_until_started(queue, job_id)
    reaper = spawn("reaper", "--reaper_interval", "0.2", "--reaper_timeout", "0.5",
                   "--reaper_retries", "1", *connection(redis_url, namespace))
    record = queue.wait(job_id, timeout=30)
    assert record["status"] == "failed"
    assert record["error"] == "gave up after 1 attempts"
    assert reaper.stop(signal.SIGTERM, timeout=10) == 0


def test_consumer_queues_gpus_and_post_options(spawn: Spawn, redis_url: str, namespace: str,
                                               queue: MLQ, cli: Any) -> None:
    worker = spawn("consumer", "--import", "tests.listeners:which_gpu", "--gpus", "3,5",
                   "--queues", "gpu", "--fair", "--max-running-per-owner", "2",
                   *connection(redis_url, namespace))
    posted = cli("post", '"x"', "--queue", "gpu", "--priority", "4")
    assert posted.rc == 0, posted.err
    owned = cli("post", '"y"', "--queue", "gpu", "--owner", "alice")
    seen = {queue.wait(posted.out.strip(), 30)["result"], queue.wait(owned.out.strip(), 30)["result"]}
    ids = [queue.post(n, queue="gpu") for n in range(10)]
    seen |= {queue.wait(i, 30)["result"] for i in ids}
    assert seen == {"3", "5"}
    assert queue.get_job(posted.out.strip())["priority"] == 4
    assert queue.get_job(owned.out.strip())["owner"] == "alice"
    default_job = queue.post("not for this worker")
    assert worker.stop(signal.SIGTERM, timeout=15) == 0
    assert queue.get_job(default_job)["status"] == "queued"
    bad = cli("post", "x", "--priority", "12")
    bad.assert_one_line_error(2)


def test_server_of_a_killed_consumer_stops_too(spawn: Spawn, redis_url: str,
                                               namespace: str) -> None:
    port = free_port()
    worker = spawn("consumer", "--server", "--server_port", str(port),
                   *connection(redis_url, namespace))
    worker.wait_for_port(port)
    worker.process.kill()  # SIGKILL: no chance to stop its server itself
    worker.process.wait(10)
    wait_until(lambda: not port_open("127.0.0.1", port, timeout=0.2), 15,
               "the server to stop with its consumer", interval=0.1)


def test_server_limits_on_messages_and_functions(spawn: Spawn, redis_url: str,
                                                 namespace: str) -> None:
    import cloudpickle
    import jsonpickle

    port = free_port()
    server = spawn("server", "--server_port", str(port), "--max-message-size", "1K",
                   "--max_function_size", "100", *connection(redis_url, namespace))
    server.wait_for_port(port)
    base = f"http://127.0.0.1:{port}"
    big = requests.post(f"{base}/jobs", json={"msg": "x" * 2000}, timeout=10)
    assert big.status_code == 400 and "exceeds the limit" in big.json()["error"]
    assert requests.post(f"{base}/jobs", json={"msg": "small"}, timeout=10).status_code == 200

    def listener_with_a_long_body(msg: Any, *args: Any) -> str:
        return "a fairly long constant string that pushes the pickle over 100 bytes" * 3

    body = jsonpickle.encode(cloudpickle.dumps(listener_with_a_long_body))
    refused = requests.post(f"{base}/consumer", data=body, timeout=10,
                            headers={"Content-Type": "application/json"})
    assert refused.status_code == 400 and "exceeds the limit" in refused.json()["error"]
    assert server.stop() == 0


@pytest.mark.parametrize("command", ["server", "consumer"])
def test_server_flags_for_hosts_scopes_and_depth(spawn: Spawn, redis_url: str, namespace: str,
                                                 command: str) -> None:
    port = free_port()
    extra = ("--server",) if command == "consumer" else ()
    env = base_env(MLQ_ADMIN_TOKEN="admin-token-of-the-cli-test")
    server = spawn(command, *extra, "--server_port", str(port), "--allowed_hosts",
                   "mlq.example,gpu-box", "--token", "user-token-of-the-cli-test",
                   "--max_depth", "3", "--behind_tls", *connection(redis_url, namespace), env=env)
    server.wait_for_port(port)
    base = f"http://127.0.0.1:{port}"
    user = {"Authorization": "Bearer user-token-of-the-cli-test"}
    admin = {"Authorization": "Bearer admin-token-of-the-cli-test"}
    assert requests.get(f"{base}/healthz", headers={"Host": "gpu-box:80"}, timeout=10).text == "ok"
    assert requests.get(f"{base}/healthz", headers={"Host": "evil.example"},
                        timeout=10).status_code == 403
    assert requests.post(f"{base}/jobs", json={"msg": [[[1]]]}, headers=user,
                         timeout=10).status_code == 200
    assert requests.post(f"{base}/jobs", json={"msg": [[[[1]]]]}, headers=user,
                         timeout=10).status_code == 400
    assert requests.post(f"{base}/deadletter/requeue", headers=user, timeout=10).status_code == 403
    assert requests.post(f"{base}/deadletter/requeue", headers=admin, timeout=10).json() == {
        "requeued": 0}
    # TLS ends at a proxy in front: the cookies are Secure though this hop is http
    login = requests.get(f"{base}/ui/login", timeout=10)
    assert "Secure" in login.headers["Set-Cookie"]
    assert server.stop() == 0
