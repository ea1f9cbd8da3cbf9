"""The parts of the long-running commands (`consumer`, `server`, `reaper`): stop
signals, the embedded Redis default, the HTTP server as a child process, the
reaper thread, and the supervisor built from the flags.

This module is the only place that installs signal handlers (STYLE principle 5):
the first SIGTERM or SIGINT asks every part of a command to stop gracefully
(running jobs finish), the second stops them now.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import click

from mlq.embedded import PASSWORD_NAME, EmbeddedServer, embedded_password, port_open
from mlq.queue import MLQ

from . import logs
from .options import ConnectionSettings

log = logging.getLogger("mlq.cli")

#: Where SPEC §1 looks for a Redis when none is named, and where the embedded one binds.
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 6379
#: How long a stopping part may take before it is killed (after running jobs finished).
PART_STOP_TIMEOUT = 10.0


# -- parts shared by the long-running commands ------------------------------------------
class StopSignals:
    """SIGTERM/SIGINT handling: the first asks each part to stop gracefully, the second now.

    Actions run inside the handler, so each must be safe there: set a flag or an
    Event no other main-thread code holds, write to a pipe, signal a process.
    """

    def __init__(self) -> None:
        self.count = 0
        self._actions: list[Callable[[bool], None]] = []
        self._previous: dict[int, Any] = {}

    def on_stop(self, action: Callable[[bool], None]) -> None:
        """Call `action(immediate)` on each signal; at once if one already came."""
        self._actions.append(action)
        if self.count:
            action(self.count > 1)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        immediate = self.count > 1
        log.info("%s: %s", signal.Signals(signum).name,
                 "stopping now" if immediate else "finishing running jobs, then stopping "
                 "(send it again to stop now)")
        for action in list(self._actions):
            action(immediate)

    def __enter__(self) -> StopSignals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


@contextlib.contextmanager
def embedded_default(conn: ConnectionSettings, data_dir: Path | None) -> Iterator[ConnectionSettings]:
    """SPEC §1: with no Redis named and none on 127.0.0.1:6379, run a private one meanwhile."""
    if conn.named or port_open(LOCAL_HOST, LOCAL_PORT):
        yield conn
        return
    server = EmbeddedServer(port=LOCAL_PORT, data_dir=data_dir, host=LOCAL_HOST,
                            password=embedded_password(data_dir, create=True)).start()
    log.info("no Redis named and none on %s:%d: started an embedded server there "
             "(data directory %s; its password is in the file %s there)", LOCAL_HOST,
             LOCAL_PORT, server.data_dir, PASSWORD_NAME)
    try:
        yield conn.with_url(server.url.rsplit("/", 1)[0] + f"/{conn.db}")
    finally:
        server.stop()


def setup_logging(log_format: str = "text") -> None:
    logs.setup(log_format)  # text, or JSON lines (--log_format json)


#: Tells `controller server` that its stdin is a pipe from the consumer that started
#: it, so the end of that pipe means the consumer died.
PARENT_PIPE_VAR = "MLQ_STOP_WITH_PARENT"


class ServerProcess:
    """The HTTP server of `consumer --server`, as a child process.

    A separate process because gevent's monkey-patching must not meet the
    supervisor's multiprocessing. It gets its own session so a terminal's
    Ctrl-C reaches only us and we decide how it stops; the token, the secret
    and the Redis URL (which may hold a password) travel in its environment,
    not on a command line that `ps` shows.
    """

    #: Settings of `consumer` that its server takes as flags of the same name.
    VALUE_FLAGS = ("server_address", "server_port", "max_body", "log_format", "max_depth",
                   "max_auth_failures", "header_timeout", "max_connections", "max_streams",
                   "min_replicas", "max_message_size", "max_function_size", "result_cache")
    SWITCHES = ("insecure", "behind_tls")
    #: Settings that travel in the environment, out of sight of `ps`.
    SECRETS = (("token", "MLQ_TOKEN"), ("secret", "MLQ_SECRET"),
               ("admin_token", "MLQ_ADMIN_TOKEN"), ("allowed_hosts", "MLQ_ALLOWED_HOSTS"))

    def __init__(self, conn: ConnectionSettings, settings: dict[str, Any]) -> None:
        command = [sys.executable, "-m", "controller", "server", "--namespace", conn.namespace]
        for name in self.VALUE_FLAGS:
            command += [f"--{name}", str(settings[name])]
        command += [f"--{name}" for name in self.SWITCHES if settings[name]]
        env = dict(os.environ, MLQ_REDIS_URL=conn.redis_url)
        env[PARENT_PIPE_VAR] = "1"  # it stops when our end of its stdin closes
        for name, variable in self.SECRETS:
            env.pop(variable, None)
            if settings[name]:
                env[variable] = settings[name]
        self.stopping = False
        self.exit_code: int | None = None  # set when it ended without being asked
        self._watch: threading.Thread | None = None
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE,
                                        start_new_session=True)

    def watch(self, on_unexpected_exit: Callable[[], None]) -> None:
        """In a thread: when the server ends without being asked, stop everything."""

        def wait() -> None:
            code = self.process.wait()
            if not self.stopping:
                log.error("the HTTP server exited with code %s; stopping", code)
                self.exit_code = code if code > 0 else 1
                on_unexpected_exit()

        self._watch = threading.Thread(target=wait, name="mlq-server-watch", daemon=True)
        self._watch.start()

    def stop(self, immediate: bool = False) -> None:
        """SIGTERM (graceful) or SIGKILL; safe in a signal handler."""
        self.stopping = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if immediate else signal.SIGTERM)

    def close(self) -> None:
        self.stop()
        try:
            self.process.wait(PART_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop(immediate=True)
            self.process.wait()
        if self._watch is not None:
            # ends as the process did; joined so that no thread of ours is left to
            # log while the interpreter shuts down
            self._watch.join(PART_STOP_TIMEOUT)
        if self.process.stdin is not None:
            self.process.stdin.close()


class ReaperThread:
    """The reaper (SPEC §6) in a thread, stopped by an Event."""

    def __init__(self, mlq: MLQ, interval: float, job_timeout: float, max_retries: int) -> None:
        from mlq.reaper import Reaper

        self.stop_event = threading.Event()
        reaper = Reaper(mlq, job_timeout=job_timeout, max_retries=max_retries,
                        heartbeat_timeout=mlq.heartbeat_timeout)
        self.thread = threading.Thread(target=reaper.run, args=(self.stop_event, interval),
                                       name="mlq-reaper", daemon=True)
        self.thread.start()
        log.info("reaper: sweeping every %g s (job timeout %g s, %d attempts)",
                 interval, job_timeout, max_retries)

    def stop(self, immediate: bool = False) -> None:
        self.stop_event.set()

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join(PART_STOP_TIMEOUT)


def make_supervisor(conn: ConnectionSettings, settings: dict[str, Any]) -> Any:
    """The Supervisor for these settings; a bad --import is a usage error."""
    from mlq.supervisor import Supervisor, SupervisorSettings

    try:
        gpus = parse_gpus(settings["gpus"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--gpus") from exc
    queues = [q.strip() for q in settings["queues"].split(",") if q.strip()]
    if not queues:
        raise click.BadParameter("name at least one queue", param_hint="--queues")
    # flags of the same name as a setting, and flags that are MLQ options
    same = ("concurrency", "imports", "secret", "heartbeat_interval", "heartbeat_timeout",
            "fair", "max_running_per_owner", "oom_retries", "grace_period", "cancel_grace")
    options = ("max_message_size", "max_result_size", "max_function_size", "result_ttl",
               "stream_max", "callback_allow_link_local")
    supervisor_settings = SupervisorSettings(
        **{name: settings[name] for name in same}, queues=queues, gpus=gpus,
        max_retries=settings["reaper_retries"],
        log_setup=logs.setup_json_child if settings.get("log_format") == "json" else None,
        mlq_options={**{name: settings[name] for name in options},
                     "callback_allow_hosts": list(settings["callback_allow"]) or None})
    try:
        return Supervisor(conn.namespace, conn.redis_url, supervisor_settings)
    except (ImportError, AttributeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--import") from exc


def parse_gpus(spec: str | None) -> list[str] | None:
    """`0,1` as given; `all` from nvidia-smi; None when no GPUs are asked for."""
    if not spec:
        return None
    if spec.strip().lower() != "all":
        gpus = [g.strip() for g in spec.split(",") if g.strip()]
        if not gpus:
            raise ValueError("name GPU ids like 0,1 or all")
        return gpus
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ValueError(f"--gpus all needs nvidia-smi, which failed: {exc}") from exc
    gpus = [line.strip() for line in found.stdout.splitlines() if line.strip()]
    if not gpus:
        raise ValueError("nvidia-smi lists no GPUs")
    return gpus
