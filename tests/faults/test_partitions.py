"""Network partitions between hosts: a worker host cut off mid-job, a flapping
Redis link, and latency between the workers and Redis.

Each test builds its own hosts (tests/faults/netns.py): a Redis host, two
worker hosts and a server host, each a network namespace on one bridge, with
addresses 10.213.0.1-4 that exist only there. Faults are injected on the
bridge ports, so every process sees a real network: a cut link gives no
error, packets just stop. The test itself reads Redis through a unix socket,
which no link fault touches. Needs root (skipped where namespaces cannot be
made).
"""

from __future__ import annotations

import secrets
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from mlq import MLQ
from mlq.heartbeat import workers
from mlq.serialization import unpack
from tests.faults import netns
from tests.faults.conftest import Command, base_env, wait_until
from tests.faults.netns import HostCommand, HostRedis, Network, stop_all

#: Short, so a cut-off host is presumed dead quickly; the contract is this + 3 s.
HEARTBEAT_TIMEOUT = 2.0
RECOVERY_LIMIT = HEARTBEAT_TIMEOUT + 3.0
SERVER_PORT = 8000  # the server host's own address: no other test can hold it
PROXY_PORT = 6380


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    reason = netns.unavailable()
    if reason:
        pytest.skip(f"network namespaces cannot be made here: {reason}")
    network = Network(tmp_path)
    try:
        network.build()
        yield network
    finally:
        network.close()


@pytest.fixture
def redis_host(net: Network, tmp_path: Path) -> HostRedis:
    return HostRedis(net, tmp_path / "redis")  # stopped by net.close()


def consumer(net: Network, role: str, url: str, namespace: str, listener: str,
             *args: str) -> HostCommand:
    # the URL holds the password: it travels in the environment, not on a command line
    return net.controller(role, f"consumer-{role}-{namespace}", "consumer",
                          "--namespace", namespace, "--import", f"tests.faults.listeners:{listener}",
                          *args, env=base_env(MLQ_REDIS_URL=url))


def alive_on(q: MLQ, command: Command) -> int:
    """Live workers whose supervisor is `command`."""
    return sum(1 for w in workers(q.client, q.keys)
               if w["alive"] and w.get("supervisor") == command.pid)


def wait_for_workers(q: MLQ, command: Command, count: int, timeout: float = 60) -> None:
    def ready() -> bool:
        assert command.running(), f"exited early\n{command.output()}"
        return alive_on(q, command) >= count

    wait_until(ready, timeout, f"{count} workers of {command.name}", interval=0.1)


def runs(log: Path) -> list[tuple[str, int]]:
    """(job id, pid) of every execution started, from the listeners' log."""
    if not log.exists():
        return []
    return [(p[0], int(p[1])) for p in (line.split() for line in log.read_text().splitlines())
            if len(p) == 2]


def ends(log: Path) -> list[tuple[str, int, int]]:
    """(job id, pid, attempt) of every `held` execution that returned."""
    if not log.exists():
        return []
    return [(p[0], int(p[1]), int(p[2])) for p in
            (line.split() for line in log.read_text().splitlines()) if len(p) == 4]


def fields(q: MLQ, ids: list[str], *names: str) -> dict[str, tuple[Any, ...]]:
    """id -> the named fields of its record, read in one round trip."""
    pipe = q.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(q.keys.job(job_id), list(names))
    return {job_id: tuple(unpack(v) if v is not None else None for v in values)
            for job_id, values in zip(ids, pipe.execute())}


def all_completed(q: MLQ, ids: list[str]) -> bool:
    return all(s == ("completed",) for s in fields(q, ids, "status").values())


class Recorder:
    """A callback receiver on the server host: counts the callbacks of each job."""

    def __init__(self, address: str) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                query = parse_qs(urlsplit(self.path).query)
                with recorder.lock:
                    recorder.calls[query.get("job_id", ["?"])[0]] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{address}:{self.server.server_address[1]}/done"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, job_id: str) -> int:
        with self.lock:
            return self.calls[job_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- a worker host cut off mid-job ------------------------------------------------------
@pytest.mark.timeout(90)
def test_a_cut_off_worker_host_is_recovered_and_its_late_outcomes_fenced(
        net: Network, redis_host: HostRedis, tmp_path: Path) -> None:
    q = MLQ("part", client=redis_host.client())
    url = redis_host.url()
    log, gate = tmp_path / "executions.log", tmp_path / "gate"
    heartbeat = ("--heartbeat_interval", "0.3", "--heartbeat_timeout", str(HEARTBEAT_TIMEOUT))
    recorder = net.call("server", lambda: Recorder(net.address("server")))
    try:
        w1 = consumer(net, "w1", url, "part", "held", "--concurrency", "2", *heartbeat)
        wait_for_workers(q, w1, 2)
        # two jobs whose first attempts run on w1 until the test opens the gate
        held = [q.post({"log": str(log), "gate": str(gate)}, callback=recorder.url)
                for _ in range(2)]
        wait_until(lambda: len(runs(log)) == 2, 30, f"both jobs running\n{w1.output()}")
        assert all(w1.owns(pid) for _, pid in runs(log)), runs(log)
        w2 = consumer(net, "w2", url, "part", "held", "--concurrency", "2", *heartbeat)
        wait_for_workers(q, w2, 2)

        net.down("w1")
        cut_at = time.time()
        during = [q.post({"log": str(log)}, callback=recorder.url) for _ in range(5)]
        # w2's own sweep takes the jobs back once w1's heartbeats expire; attempt 2 runs at once
        wait_until(lambda: all_completed(q, held), RECOVERY_LIMIT + 10,
                   f"the held jobs recovered on w2\n{net.outputs()}", interval=0.1)
        recovered_after = max(s for (s,) in fields(q, held, "processing_started").values()) - cut_at
        assert recovered_after < RECOVERY_LIMIT, f"recovered {recovered_after:.1f} s after the cut"
        wait_until(lambda: all_completed(q, during), 20, "the jobs posted during the cut")

        # w1's first attempts end while it is still cut off: their outcomes wait for the link
        gate.touch()
        wait_until(lambda: sum(a == 1 and w1.owns(pid) for _, pid, a in ends(log)) == 2, 20,
                   f"w1's first attempts to return\n{w1.output()}")
        before = {job_id: q.get_job(job_id) for job_id in held}
        net.up("w1")
        healed_at = time.monotonic()
        wait_until(lambda: all(f"job {j} attempt 1 finished late" in w1.log_path.read_text()
                               for j in held), 30,
                   f"w1's late outcomes to arrive\n{w1.output()}", interval=0.1)
        fenced_after = time.monotonic() - healed_at
        # w1 heartbeats again and takes work again
        wait_for_workers(q, w1, 2, timeout=30)
        after = [q.post({"log": str(log)}, callback=recorder.url) for _ in range(10)]
        wait_until(lambda: all_completed(q, after), 20, f"the jobs posted after\n{net.outputs()}")

        for job_id in held:
            record = q.get_job(job_id)
            assert record == before[job_id], "a late outcome changed the record"
            assert (record["status"], record["attempt"], record["retries"]) == ("completed", 2, 1)
            assert w2.owns(record["result"]["pid"]), "the result must be attempt 2's, on w2"
        every = held + during + after
        assert q.stats()["completed"] == len(every), q.stats()
        wait_until(lambda: all(recorder.count(j) for j in every), 15, "every callback")
        time.sleep(1.0)  # a second callback would come right after the late finish
        twice = {j: recorder.count(j) for j in every if recorder.count(j) != 1}
        assert not twice, f"callbacks per job: {twice}"
        on_w1 = sum(1 for job_id, pid in runs(log) if job_id in after and w1.owns(pid))
        assert stop_all([w1, w2]) == {w1.name: 0, w2.name: 0}
    finally:
        recorder.close()
    print(f"\npartition (worker host): its 2 jobs ran again on the other host "
          f"{recovered_after:.1f} s after the cut (heartbeat timeout {HEARTBEAT_TIMEOUT:g} s, "
          f"no reaper); its late outcomes were fenced {fenced_after:.1f} s after the link came "
          f"back (records unchanged, 1 callback per job); {len(during)} jobs posted during the "
          f"cut and {len(after)} after it completed ({on_w1} of those on the host that was cut "
          f"off); {len(every)} completed in all")


# -- the Redis host's link flapping ---------------------------------------------------------
class HttpPoster:
    """Posts a job every 20 ms through the server host's HTTP API, from a thread on
    that host; remembers each acknowledged post (id, token) and counts the others."""

    def __init__(self, net: Network, base: str, token: str, log: Path) -> None:
        self.base, self.token, self.log = base, token, str(log)
        self.posted: list[tuple[str, int, float]] = []
        self.refused = 0
        self.slowest = 0.0
        self.last_error = ""
        self.stop = threading.Event()
        self.thread = net.thread("server", self._run, "http-poster")

    def _run(self) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {self.token}"
            token = 0
            while not self.stop.is_set():
                token += 1
                started = time.monotonic()
                try:
                    answer = session.post(f"{self.base}/jobs", timeout=15, json={
                        "msg": {"log": self.log, "sleep": 0.005, "token": token}})
                    ok = answer.status_code == 200
                    if not ok:
                        self.last_error = f"{answer.status_code} {answer.text[:200]}"
                except requests.RequestException as exc:
                    ok, self.last_error = False, repr(exc)
                if ok:
                    self.posted.append((answer.text.strip(), token, time.time()))
                    self.slowest = max(self.slowest, time.monotonic() - started)
                else:
                    self.refused += 1
                self.stop.wait(0.02)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


def kill_host_connections(q: MLQ) -> int:
    """CLIENT KILL every connection from the hosts (TCP, not the test's unix socket)."""
    ids = [c["id"] for c in q.client.client_list() if c["addr"].startswith(netns.SUBNET + ".")]
    return sum(int(q.client.client_kill_filter(_id=client_id)) for client_id in ids)


def healthz(net: Network, base: str) -> int:
    return net.call("server", lambda: requests.get(f"{base}/healthz", timeout=10).status_code)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_flapping_redis_link_loses_no_acknowledged_post(
        net: Network, redis_host: HostRedis, tmp_path: Path) -> None:
    q = MLQ("flap", client=redis_host.client())
    url, token = redis_host.url(), secrets.token_urlsafe(32)
    log = tmp_path / "executions.log"
    heartbeat = ("--heartbeat_interval", "0.5", "--heartbeat_timeout", "5")
    server = net.controller("server", "server", "server", "--namespace", "flap",
                            "--server_address", net.address("server"),
                            "--server_port", str(SERVER_PORT),
                            env=base_env(MLQ_REDIS_URL=url, MLQ_TOKEN=token))
    hosts = [consumer(net, role, url, "flap", "record", "--concurrency", "2", *heartbeat)
             for role in ("w1", "w2")]
    base = f"http://{net.address('server')}:{SERVER_PORT}"

    def server_healthy() -> bool:
        assert server.running(), server.output()
        try:
            return healthz(net, base) == 200
        except requests.RequestException:
            return False

    wait_until(server_healthy, 60, "the server's /healthz", interval=0.2)
    for command in hosts:
        wait_for_workers(q, command, 2)

    poster = HttpPoster(net, base, token, log)
    try:
        wait_until(lambda: len(poster.posted) >= 20, 30,
                   f"posts through the API (last error: {poster.last_error})")
        flaps = killed = 0
        flap_started = time.monotonic()
        # the test's own connection is a unix socket: every TCP connection Redis
        # receives meanwhile is a host's client (re)connecting
        connections = int(q.client.info("stats")["total_connections_received"])
        while time.monotonic() - flap_started < 20:  # every 2 s for 20 s: down, up, ...
            net.down("redis")
            time.sleep(1)  # the flap schedule: down 2 s (in two halves), up 2 s
            if flaps % 2:
                # TCP rides out a 2 s outage by itself; every second time Redis also
                # drops the connections it cannot reach (as a server whose keepalive
                # gave up would), so each client finds its connection gone once the
                # link is back, and must reconnect
                killed += kill_host_connections(q)
            time.sleep(1)  # the second half of the outage
            net.up("redis")
            flaps += 1
            time.sleep(2)  # up for 2 s before the next flap
        back_at = time.time()
        connections = int(q.client.info("stats")["total_connections_received"]) - connections
        # the server and the workers reconnected: new posts go through and complete
        wait_until(lambda: sum(t > back_at for _, _, t in poster.posted) >= 50, 30,
                   f"posts after the flapping (last error: {poster.last_error})\n"
                   f"{net.outputs()}")
    finally:
        poster.close()
    assert not poster.thread.is_alive()

    ids = [job_id for job_id, _, _ in poster.posted]
    try:
        wait_until(lambda: all_completed(q, ids), 60, "every acknowledged post", interval=0.2)
    except AssertionError:
        states = fields(q, ids, "status")
        wrong = {i: s for i, s in states.items() if s != ("completed",)}
        raise AssertionError(f"{len(wrong)} not completed: {dict(list(wrong.items())[:20])}\n"
                             f"{net.outputs()}") from None
    messages = fields(q, ids, "msg")
    assert all(messages[i][0]["token"] == tok for i, tok, _ in poster.posted)
    executions = runs(log)
    duplicates = len(executions) - len({job_id for job_id, _ in executions})
    per_host = [sum(1 for _, pid in executions if command.owns(pid)) for command in hosts]
    assert all(command.running() for command in (server, *hosts)), net.outputs()
    assert healthz(net, base) == 200
    assert all(alive_on(q, command) == 2 for command in hosts)
    assert stop_all([server, *hosts]) == {c.name: 0 for c in (server, *hosts)}
    print(f"\npartition (flapping Redis link): down/up every 2 s, {flaps} times in 20 s; "
          f"{len(ids)} posts acknowledged through the HTTP API, all completed ({per_host[0]} "
          f"run on one worker host, {per_host[1]} on the other); {poster.refused} posts refused "
          f"or failed; slowest acknowledged post {poster.slowest:.1f} s; {killed} connections "
          f"dropped by Redis in 2 of the outages, {connections} opened during the flapping; {duplicates} duplicate executions; "
          f"server and both worker hosts reconnected by themselves and exited 0 on SIGTERM")


# -- latency between the workers and Redis ----------------------------------------------------
def measure(q: MLQ, singles: int = 30, burst: int = 500) -> tuple[float, float]:
    """(p50 of one job posted and awaited at a time in s, jobs/s of a burst)."""
    latencies = []
    for n in range(singles):
        started = time.perf_counter()
        record = q.wait(q.post(n), timeout=20)
        latencies.append(time.perf_counter() - started)
        assert record["status"] == "completed", record
    posted_at = time.time()
    ids = q.post_many(list(range(burst)))
    wait_until(lambda: all_completed(q, ids), 60, f"{burst} jobs", interval=0.05)
    last = max(f for (f,) in fields(q, ids, "processing_finished").values())
    return statistics.median(latencies), burst / (last - posted_at)


@pytest.mark.timeout(90)
def test_latency_between_workers_and_redis(net: Network, redis_host: HostRedis,
                                           tmp_path: Path) -> None:
    proxy = net.start("redis", "delay-proxy", [
        sys.executable, "-m", "tests.faults.delay_proxy", redis_host.address, str(PROXY_PORT),
        "127.0.0.1", str(netns.REDIS_PORT), "--delay", "0.010", "--jitter", "0.005"])
    wait_until(lambda: "listening" in proxy.log_path.read_text(), 20,
               f"the delay proxy\n{proxy.output()}")
    # one namespace whose workers reach Redis directly, one through the proxy; one
    # worker per host each
    queues, commands = {}, []
    for name, url in (("direct", redis_host.url()),
                      ("delayed", redis_host.url(port=PROXY_PORT))):
        queues[name] = MLQ(name, client=redis_host.client())
        commands += [(name, consumer(net, role, url, name, "quick")) for role in ("w1", "w2")]
    for name, command in commands:
        wait_for_workers(queues[name], command, 1)

    figures = {name: measure(q) for name, q in queues.items()}
    assert all(command.running() for _, command in commands), net.outputs()
    assert stop_all([command for _, command in commands]) == {c.name: 0 for _, c in commands}
    (direct_p50, direct_rate), (delayed_p50, delayed_rate) = figures["direct"], figures["delayed"]
    # proof that the delay is in the path (a finish crosses the proxy twice,
    # at least 5 ms each way); no bound on speed: the machine is shared
    assert delayed_p50 >= 0.010, f"p50 {delayed_p50 * 1000:.1f} ms: is the proxy in the path?"
    print(f"\npartition (latency): workers on 2 hosts, 1 each, 10 ± 5 ms added each way between "
          f"them and Redis: one job at a time p50 {delayed_p50 * 1000:.0f} ms, a burst of 500 "
          f"at {delayed_rate:.0f} jobs/s (direct: p50 {direct_p50 * 1000:.0f} ms, "
          f"{direct_rate:.0f} jobs/s)")
