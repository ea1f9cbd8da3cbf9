"""Replicated and sharded Redis set-ups for tests, all on loopback ports: a master
with replicas watched by sentinels, and a cluster of several masters.

Every process is the `valkey-server` binary the suite already uses (sentinel
mode is the same binary); a cluster is joined with the `valkey-cli` beside it.
Each set-up kills what it started when it stops, also after a failed test.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from mlq.embedded import find_server_binary, free_port

MASTER_NAME = "mymaster"
#: Sentinels call a silent master down after this long, then fail over.
DOWN_AFTER_MS = 1000


class Node:
    """One server process with its own folder and log."""

    def __init__(self, folder: Path, args: list[str], port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self, config: str = "") -> Node:
        config_path = self.folder / "node.conf"
        config_path.write_text(config)
        log = open(self.folder / "log", "ab")
        self.process = subprocess.Popen(
            [find_server_binary(), str(config_path), "--port", str(self.port),
             "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "",
             "--daemonize", "no", *self.args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        return self

    def call(self, *command: object) -> object:
        """One command's reply, on a connection of its own (closed at once)."""
        with redis.Redis("127.0.0.1", self.port, socket_timeout=2, socket_connect_timeout=1,
                         decode_responses=True) as client:
            return client.execute_command(*command)

    def keys(self, pattern: str) -> list[str]:
        with redis.Redis("127.0.0.1", self.port, socket_timeout=2) as client:
            return [key.decode() for key in client.scan_iter(match=pattern)]

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                # the answer must come from this process, not from another test's
                # server that took the port in between
                if self.call("INFO", "server")["process_id"] == self.process.pid:  # type: ignore
                    return
            except (redis.RedisError, AttributeError):
                pass
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"server on {self.port} exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.port} did not answer:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join((self.folder / "log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class SentinelSetup:
    """A master, `replicas` replicas and `sentinels` sentinels (quorum: a majority)."""

    def __init__(self, folder: Path, replicas: int = 2, sentinels: int = 3) -> None:
        self.master = Node(folder / "master", ["--appendonly", "yes"])
        self.replicas = [Node(folder / f"replica{i}", ["--appendonly", "yes"])
                         for i in range(replicas)]
        self.sentinels = [Node(folder / f"sentinel{i}", ["--sentinel"]) for i in range(sentinels)]
        self.quorum = sentinels // 2 + 1

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}"

    @property
    def data_nodes(self) -> list[Node]:
        return [self.master, *self.replicas]

    def start(self) -> SentinelSetup:
        # a replica's first sync waits 5 s by default, for others to join in
        fast_sync = "repl-diskless-sync-delay 0\n"
        self.master.start(fast_sync).wait_ready()
        for replica in self.replicas:
            replica.start(fast_sync + f"replicaof 127.0.0.1 {self.master.port}\n").wait_ready()
        _wait_for(lambda: self._replicas_online() == len(self.replicas), 15,
                  "the replicas to finish their first sync")
        monitor = (f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} {self.quorum}\n"
                   f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                   f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                   f"sentinel parallel-syncs {MASTER_NAME} 2\n")
        for sentinel in self.sentinels:
            sentinel.start(monitor).wait_ready()
        # each sentinel must know the others before it can reach a quorum
        try:
            _wait_for(lambda: all(
                int(self._master_state(s)["num-other-sentinels"]) == len(self.sentinels) - 1  # type: ignore[call-overload]
                for s in self.sentinels), 60, "sentinels to meet")
        except RuntimeError as exc:
            logs = "\n".join(s.log_tail() for s in self.sentinels)
            raise RuntimeError(f"{exc}; {[self._master_state(s) for s in self.sentinels]}\n{logs}")
        return self

    def _replicas_online(self) -> int:
        info = self.master.call("INFO", "replication")  # parsed: one dict per replica
        return sum(1 for key, value in info.items()  # type: ignore[union-attr]
                   if key.startswith("slave") and value.get("state") == "online")

    @staticmethod
    def _master_state(sentinel: Node) -> dict[str, object]:
        return sentinel.call("SENTINEL", "MASTER", MASTER_NAME)  # type: ignore[return-value]

    def master_port(self) -> int:
        """The master's port, as a sentinel that still runs reports it."""
        return int(self._master_state(self.sentinels[-1])["port"])  # type: ignore[call-overload]

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data_nodes]:
            node.kill()


class ClusterSetup:
    """`masters` masters sharing the 16,384 slots, no replicas."""

    def __init__(self, folder: Path, masters: int = 3) -> None:
        # the bus port is named: by default it is the port + 10,000, past 65,535
        # for the high ports free_port() tends to give
        self.nodes = [Node(folder / f"node{i}", [
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-port", str(free_port()), "--cluster-node-timeout", "2000",
            "--appendonly", "no"]) for i in range(masters)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> ClusterSetup:
        for node in self.nodes:
            node.start().wait_ready()
        cli = Path(find_server_binary()).with_name("valkey-cli")
        if not cli.exists():
            cli = cli.with_name("redis-cli")
        subprocess.run([str(cli), "--cluster", "create",
                        *(f"127.0.0.1:{node.port}" for node in self.nodes), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        _wait_for(lambda: all("cluster_state:ok" in str(node.call("CLUSTER", "INFO"))
                              for node in self.nodes), 20, "the cluster to be ok")
        return self

    def node_owning(self, key: str) -> Node:
        slot = int(self.nodes[0].call("CLUSTER", "KEYSLOT", key))  # type: ignore[arg-type]
        for start, end, primary, *_ in self.nodes[0].call("CLUSTER", "SLOTS"):  # type: ignore[union-attr]
            if start <= slot <= end:
                return next(node for node in self.nodes if node.port == int(primary[1]))
        raise LookupError(f"no node owns slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
