"""Hosts for the partition tests: Linux network namespaces on one bridge.

Each host is a network namespace with one interface, `eth0`, whose peer is a
port of a bridge. The bridge lives in a namespace of its own, so the root
namespace gains no interface, address or route, and taking a host's bridge
port down cuts that host off the way a pulled cable would: its processes get
no error, their packets are simply not delivered. Every name carries a random
token, so a leftover of a killed run never collides with this one, and
`Network.close` removes everything a test made (processes, then namespaces),
also after a failure.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import redis

from mlq.embedded import find_server_binary
from tests.faults.conftest import ROOT, Command, base_env, group_pids, wait_until

T = TypeVar("T")

#: The test network: every address is assigned here, to interfaces made here.
SUBNET = "10.213.0"
#: Host octet of each role on the bridge.
ROLES = {"redis": 1, "w1": 2, "w2": 3, "server": 4}
REDIS_PORT = 6379
#: CLONE_NEWNET from <sched.h>: setns(2) then moves only the calling thread.
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)
_probe: list[str | None] = []


def ip(*args: str) -> str:
    """Run `ip ARGS`; RuntimeError with its stderr when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def unavailable() -> str | None:
    """Why these tests cannot build their hosts here, or None when they can.

    Found by trying: a namespace holding a bridge and a veth pair is made and
    deleted (needs root, iproute2 and the bridge and veth drivers).
    """
    if _probe:
        return _probe[0]
    reason = None
    name = f"mlqprobe{secrets.token_hex(4)}"
    if not sys.platform.startswith("linux") or shutil.which("ip") is None:
        reason = "these tests need Linux and iproute2 (`ip`)"
    else:
        try:
            ip("netns", "add", name)
            try:
                ip("-n", name, "link", "add", "br0", "type", "bridge")
                ip("-n", name, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
            finally:
                ip("netns", "delete", name)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            reason = f"{exc} (these tests need root)"
    _probe.append(reason)
    return reason


def enter(namespace: str) -> None:
    """Move the calling thread (only it) into `namespace`: the sockets it makes
    from then on belong there, and keep belonging there from any thread."""
    fd = os.open(NETNS_DIR / namespace, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {namespace}: {os.strerror(err)}")
    finally:
        os.close(fd)


class HostCommand(Command):
    """A command run with `ip netns exec` on one host, leader of its own process group.

    `ip netns exec` execs the command in place, so the pid is the command's own.
    """

    def __init__(self, namespace: str, name: str, argv: list[str], log_dir: Path,
                 env: dict[str, str]) -> None:
        self.name = name
        self.args = argv
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", namespace, *argv], cwd=ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.pgid = self.process.pid


class Network:
    """A bridge and the hosts in ROLES, made by `build()`, removed by `close()`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.token = secrets.token_hex(3)
        self.bridge = f"mlqp{self.token}-br"
        self.namespaces = {role: f"mlqp{self.token}-{role}" for role in ROLES}
        self.made: list[str] = []
        self.commands: list[HostCommand] = []
        # a unix socket path must be short (108 bytes): not under pytest's tmp_path
        self.socket_dir = Path(tempfile.mkdtemp(prefix=f"mlqp{self.token}-"))

    def address(self, role: str) -> str:
        return f"{SUBNET}.{ROLES[role]}"

    def build(self) -> Network:
        self._add(self.bridge)
        ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge, "link", "set", "br0", "up")
        for role, namespace in self.namespaces.items():
            self._add(namespace)
            ip("-n", namespace, "link", "set", "lo", "up")
            # made in the bridge's namespace, host end moved straight to the host
            ip("-n", self.bridge, "link", "add", f"p-{role}", "type", "veth",
               "peer", "name", "eth0", "netns", namespace)
            ip("-n", self.bridge, "link", "set", f"p-{role}", "master", "br0", "up")
            ip("-n", namespace, "addr", "add", f"{self.address(role)}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
        return self

    def _add(self, namespace: str) -> None:
        ip("netns", "add", namespace)
        self.made.append(namespace)

    # -- faults --------------------------------------------------------------------
    def down(self, role: str) -> None:
        """Cut `role` off: its bridge port goes down (the host sees no carrier)."""
        ip("-n", self.bridge, "link", "set", f"p-{role}", "down")

    def up(self, role: str) -> None:
        ip("-n", self.bridge, "link", "set", f"p-{role}", "up")

    # -- running things on a host --------------------------------------------------
    def start(self, role: str, name: str, argv: list[str],
              env: dict[str, str] | None = None) -> HostCommand:
        """Start `argv` on `role`'s host; killed (its whole group) by close()."""
        command = HostCommand(self.namespaces[role], name, argv, self.log_dir,
                              env if env is not None else base_env())
        self.commands.append(command)
        return command

    def controller(self, role: str, name: str, *args: str, env: dict[str, str]) -> HostCommand:
        return self.start(role, name, [sys.executable, "-m", "controller", *args], env)

    def call(self, role: str, function: Callable[[], T]) -> T:
        """`function()` run in a thread inside `role`'s namespace (sockets it makes stay there)."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                enter(self.namespaces[role])
                outcome["value"] = function()
            except BaseException as exc:  # handed to the caller below
                outcome["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def thread(self, role: str, target: Callable[[], None], name: str) -> threading.Thread:
        """A started daemon thread running `target` inside `role`'s namespace."""

        def run() -> None:
            enter(self.namespaces[role])
            target()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    def outputs(self) -> str:
        return "\n".join(c.output() for c in self.commands)

    def close(self) -> None:
        """Kill every process started here, then delete the namespaces (and with
        them the bridge and veth pairs). Safe after a failure, and twice."""
        errors = []
        for command in self.commands:
            try:
                command.cleanup()
            except Exception as exc:  # the namespaces must go even so
                errors.append(f"{command.name}: {exc!r}")
        for namespace in reversed(self.made):
            try:
                ip("netns", "delete", namespace)
            except RuntimeError as exc:
                errors.append(str(exc))
        self.made.clear()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        left = [n for n in (self.bridge, *self.namespaces.values()) if (NETNS_DIR / n).exists()]
        assert not errors and not left, f"cleanup failed: {errors}, namespaces left: {left}"


class HostRedis:
    """A Redis on the `redis` host: on its address (for the other hosts), on its own
    loopback (for a proxy on that host), and on a unix socket, which the test
    itself uses and which no link fault can reach. It has a password, as a
    server on a network address should."""

    def __init__(self, net: Network, data_dir: Path) -> None:
        self.password = secrets.token_urlsafe(24)
        self.address = net.address("redis")
        self.socket = net.socket_dir / "redis.sock"
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir / "redis.conf"
        # the password in a file only root reads, not on a command line `ps` shows
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(f'requirepass "{self.password}"\n')
        self.command = net.start("redis", "redis", [
            find_server_binary(), str(config), "--bind", self.address, "127.0.0.1",
            "--port", str(REDIS_PORT), "--unixsocket", str(self.socket),
            "--unixsocketperm", "700", "--dir", str(data_dir), "--appendonly", "yes",
            "--appendfsync", "everysec", "--save", "", "--daemonize", "no"])
        self._wait_ready()

    def url(self, host: str | None = None, port: int = REDIS_PORT) -> str:
        """The URL other hosts use (to `host`:`port`, the server itself by default)."""
        return f"redis://:{self.password}@{host or self.address}:{port}/0"

    def client(self, **options: Any) -> redis.Redis:
        """The test's own way in: the unix socket. (Built here rather than from a
        unix:// URL: mlq.connection.connect passes socket_keepalive, which redis-py's
        unix socket connections refuse.)"""
        return redis.Redis(unix_socket_path=str(self.socket), password=self.password,
                           **options)

    def _wait_ready(self) -> None:
        def answers() -> bool:
            assert self.command.running(), f"Redis exited\n{self.command.output()}"
            client = self.client(socket_timeout=1)
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
            finally:
                client.close()

        wait_until(answers, 20, "Redis on its host", interval=0.05)


def stop_all(commands: list[Command], timeout: float = 20.0) -> dict[str, int]:
    """SIGTERM each command at once, then each exit code (AssertionError when one hangs)."""
    for command in commands:
        if command.running():
            command.process.send_signal(signal.SIGTERM)
    codes = {}
    deadline = time.monotonic() + timeout
    for command in commands:
        try:
            codes[command.name] = command.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{command.name} did not exit within {timeout} s after "
                                 f"SIGTERM (pids {group_pids(command.pgid)})\n"
                                 f"{command.output()}") from None
    return codes
