"""The `controller` command line (SPEC §8): the click group and the long-running commands.

The job commands live in controller/commands_jobs.py. This module is the only
place that installs signal handlers (STYLE principle 5): the first SIGTERM or
SIGINT asks every part of a command to stop gracefully (running jobs finish),
the second stops them now.
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
import redis

from mlq import defaults
from mlq.embedded import PASSWORD_NAME, EmbeddedServer, embedded_password, port_open
from mlq.errors import REDIS_DOWN, JobNotFound, MLQError
from mlq.keys import DEFAULT_QUEUE
from mlq.queue import MLQ

from . import commands_jobs, logs, top
from .options import (
    ByteSize,
    META_KEY,
    CliError,
    ConnectionSettings,
    connection_options,
    data_dir_option,
    check_tokens,
    heartbeat_timeout_option,
    http_server_options,
    max_function_size_option,
    max_message_size_option,
    open_mlq,
    option,
    reaper_interval_option,
    reaper_retries_option,
    reaper_timeout_option,
    secret_option,
    unreachable_message,
    wait_for_redis_option,
)

log = logging.getLogger("mlq.cli")

#: Where SPEC §1 looks for a Redis when none is named, and where the embedded one binds.
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 6379
#: How long a stopping part may take before it is killed (after running jobs finished).
PART_STOP_TIMEOUT = 10.0


class MLQGroup(click.Group):
    """A group that maps MLQ's exceptions to one line and exit 2, and accepts dashed names."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return (super().get_command(ctx, cmd_name)
                or super().get_command(ctx, cmd_name.replace("-", "_")))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except REDIS_DOWN as exc:
            raise CliError(unreachable_message(ctx.meta.get(META_KEY), exc)) from exc
        except JobNotFound as exc:
            raise CliError(str(exc)) from exc
        except MLQError as exc:
            raise CliError(str(exc)) from exc
        except redis.RedisError as exc:
            raise CliError(f"Redis error: {exc}") from exc
        except UnicodeError as exc:  # a namespace or host that is not valid text
            raise click.UsageError(f"not valid text: {exc}") from exc


@click.group(cls=MLQGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlq", message="%(prog)s (mlq) %(version)s")
def cli() -> None:
    """MLQ: a job queue and workers for slow machine-learning work, on Redis.

    Every command takes --redis_url (or --redis_host/--redis_port/--redis_db)
    and --namespace; MLQ_REDIS_URL, MLQ_NAMESPACE, MLQ_TOKEN and MLQ_SECRET
    stand for the flags. Dashed spellings (--redis-url) work too.

    \b
    Examples:
      controller consumer --server --import my_listeners:translate
      controller post '{"text": "hello"}' --wait
      controller status 1
    """


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

        threading.Thread(target=wait, name="mlq-server-watch", daemon=True).start()

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


# -- consumer ---------------------------------------------------------------------------
@cli.command()
@option("concurrency", type=click.IntRange(min=1), default=1, show_default=True,
        help="Worker processes.")
@click.option("--import", "imports", multiple=True, metavar="MODULE:FUNCTION",
              help="Load a listener from code for this worker alone (repeatable).")
@option("server", is_flag=True, help="Also run the HTTP server.")
@http_server_options
@wait_for_redis_option
@option("grace_period", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
        help="On SIGTERM, let running jobs finish for this long, then put them back "
             "(fits Kubernetes' terminationGracePeriodSeconds)  [default: no limit]")
@option("reaper", is_flag=True, help="Also run the reaper.")
@reaper_interval_option
@reaper_timeout_option
@reaper_retries_option
@option("heartbeat_interval", type=click.FloatRange(min=0, min_open=True),
        default=defaults.HEARTBEAT_INTERVAL, show_default=True,
        help="Seconds between worker heartbeats.")
@heartbeat_timeout_option
@secret_option
@data_dir_option
@option("queues", default=DEFAULT_QUEUE, show_default=True, metavar="A,B",
        help="Queues to take jobs from, in order of preference.")
@option("gpus", default=None, metavar="0,1|all",
        help="One worker process per GPU, each seeing only its own (CUDA_VISIBLE_DEVICES).")
@option("fair", is_flag=True, help="Share jobs round-robin between their owners.")
@option("max_running_per_owner", type=click.IntRange(min=0), default=0, show_default=True,
        help="With owners: at most this many running jobs per owner (0: no limit).")
@option("oom_retries", type=click.IntRange(min=0), default=0, show_default=True,
        help="Attempts again after a job ran out of memory (OOM killer).")
@max_message_size_option
@option("max_result_size", type=ByteSize(), default=str(defaults.MAX_RESULT_SIZE),
        help="Largest result stored; a bigger one fails its job clearly.")
@max_function_size_option
@option("result_ttl", type=click.FloatRange(min=0, min_open=True), default=None,
        help="Delete finished records after this many seconds (default: keep).")
@option("callback_allow", multiple=True, metavar="HOST",
        help="Send callbacks only to these hosts (repeatable).")
@option("callback_allow_link_local", is_flag=True,
        help="Allow callbacks to link-local addresses (169.254.0.0/16, cloud metadata).")
@logs.log_format_option
@connection_options
def consumer(conn: ConnectionSettings, **settings: Any) -> None:
    """Run worker processes that consume jobs; optionally the HTTP server and the reaper.

    Each worker runs the listeners registered for the namespace plus those
    named with --import. SIGTERM or Ctrl-C: running jobs finish, then every
    part stops; a second signal stops them now. With no Redis named and none
    on 127.0.0.1:6379, an embedded Redis is started (see --data_dir).

    \b
    Examples:
      controller consumer --import my_listeners:translate --concurrency 4
      controller consumer --server --server_port 8000 --reaper
      MLQ_REDIS_URL=redis://redis:6379/0 controller consumer --server
      controller consumer --queues gpu,default --gpus all --fair
    """
    setup_logging(settings["log_format"])
    if settings["server"]:
        check_tokens(settings["token"], settings["admin_token"])
    if settings["imports"] and os.getcwd() not in sys.path:
        # as rq and celery do: `--import my_listeners:f` finds a module in the
        # current directory, also from the console script (children inherit sys.path)
        sys.path.insert(0, os.getcwd())
    with StopSignals() as signals, embedded_default(conn, settings["data_dir"]) as live:
        if not signals.count:
            sys.exit(run_consumer(live, signals, settings))


def run_consumer(conn: ConnectionSettings, signals: StopSignals, settings: dict[str, Any]) -> int:
    """Start the supervisor and the optional parts; block until all stopped; exit code."""
    parts: list[ReaperThread | ServerProcess] = []
    try:
        if settings["server"]:
            # first: while we wait for Redis, /healthz already answers (503)
            http = ServerProcess(conn, settings)
            parts.append(http)
            signals.on_stop(http.stop)
        mlq = open_mlq(conn, secret=settings["secret"], wait_for=settings["wait_for_redis"],
                       stop=lambda: signals.count > 0)
        supervisor = make_supervisor(conn, settings)
        signals.on_stop(supervisor.request_stop)
        for part in parts:
            part.watch(supervisor.request_stop)  # a server that fails stops everything
        if settings["reaper"]:
            reaper = ReaperThread(mlq, settings["reaper_interval"], settings["reaper_timeout"],
                                  settings["reaper_retries"])
            parts.append(reaper)
            signals.on_stop(reaper.stop)
        supervisor.run()
    finally:
        for part in parts:
            part.close()
    server_codes = [p.exit_code for p in parts if isinstance(p, ServerProcess) and p.exit_code]
    return server_codes[0] if server_codes else 0


def make_supervisor(conn: ConnectionSettings, settings: dict[str, Any]) -> Any:
    """The Supervisor for these settings; a bad --import is a usage error."""
    from mlq.supervisor import Supervisor

    try:
        gpus = parse_gpus(settings["gpus"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--gpus") from exc
    queues = [q.strip() for q in settings["queues"].split(",") if q.strip()]
    if not queues:
        raise click.BadParameter("name at least one queue", param_hint="--queues")
    try:
        return Supervisor(conn.namespace, conn.redis_url,
                          concurrency=settings["concurrency"], imports=settings["imports"],
                          secret=settings["secret"],
                          heartbeat_interval=settings["heartbeat_interval"],
                          heartbeat_timeout=settings["heartbeat_timeout"],
                          max_retries=settings["reaper_retries"],
                          queues=queues, gpus=gpus, fair=settings["fair"],
                          max_running_per_owner=settings["max_running_per_owner"],
                          oom_retries=settings["oom_retries"],
                          max_message_size=settings["max_message_size"],
                          max_result_size=settings["max_result_size"],
                          max_function_size=settings["max_function_size"],
                          result_ttl=settings["result_ttl"],
                          callback_allow_hosts=list(settings["callback_allow"]) or None,
                          callback_allow_link_local=settings["callback_allow_link_local"],
                          log_setup=(logs.setup_json_child if settings.get("log_format") == "json"
                                     else None),
                          grace_period=settings["grace_period"])
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


# -- server -----------------------------------------------------------------------------
@cli.command()
@http_server_options
@secret_option
@data_dir_option
@max_message_size_option
@max_function_size_option
@logs.log_format_option
@connection_options
def server(conn: ConnectionSettings, server_address: str, server_port: int, max_body: int,
           token: str | None, admin_token: str | None, allowed_hosts: str, max_depth: int,
           max_auth_failures: int, header_timeout: float, max_connections: int,
           max_streams: int, min_replicas: int, behind_tls: bool, insecure: bool,
           result_cache: int, secret: str | None,
           data_dir: Path | None,
           max_message_size: int, max_function_size: int, log_format: str) -> None:
    """Run the HTTP server alone (gevent); SIGTERM or Ctrl-C stops it.

    It binds to loopback unless told otherwise; another address needs --token
    (or MLQ_TOKEN), or --insecure.

    \b
    Examples:
      controller server --server_port 8000
      MLQ_TOKEN=s3cret controller server --server_address 0.0.0.0
    """
    from controller.app import create_app
    from controller.server import check_bind, serve_forever

    setup_logging(log_format)
    check_tokens(token, admin_token)  # refuse before starting anything
    check_bind(server_address, token, insecure)
    with embedded_default(conn, data_dir) as live:
        # no wait here: the server serves at once, and /healthz answers 503 until
        # Redis is reachable (a load balancer or Kubernetes then holds traffic back)
        mlq = open_mlq(live, secret=secret, max_message_size=max_message_size,
                       max_function_size=max_function_size, min_replicas=min_replicas,
                       check=False)
        app = create_app(mlq, token=token, admin_token=admin_token, secret=secret,
                         max_body=max_body, allowed_hosts=allowed_hosts.split(","),
                         bind_address=server_address, max_depth=max_depth,
                         behind_tls=behind_tls, max_auth_failures=max_auth_failures,
                         max_streams=max_streams, result_cache=result_cache)
        try:
            serve_forever(app, server_address, server_port,
                          stop_on_stdin_eof=os.environ.get(PARENT_PIPE_VAR) == "1",
                          header_timeout=header_timeout, max_connections=max_connections)
        except OSError as exc:  # address in use, no permission for a low port
            raise CliError(f"cannot serve on {server_address}:{server_port}: "
                           f"{exc.strerror or exc}") from exc


# -- reaper -----------------------------------------------------------------------------
@cli.command()
@reaper_interval_option
@reaper_timeout_option
@reaper_retries_option
@heartbeat_timeout_option
@wait_for_redis_option
@logs.log_format_option
@connection_options
def reaper(conn: ConnectionSettings, reaper_interval: float, reaper_timeout: float,
           reaper_retries: int, heartbeat_timeout: float, wait_for_redis: float | None,
           log_format: str) -> None:
    """Run the reaper alone: requeue (or fail) jobs of dead workers and jobs running too long.

    Several reapers may run at once. SIGTERM or Ctrl-C stops it.

    \b
    Examples:
      controller reaper --reaper_interval 30 --reaper_timeout 600 --reaper_retries 3
    """
    setup_logging(log_format)
    with StopSignals() as signals:
        mlq = open_mlq(conn, heartbeat_timeout=heartbeat_timeout, wait_for=wait_for_redis,
                       stop=lambda: signals.count > 0)
        part = ReaperThread(mlq, reaper_interval, reaper_timeout, reaper_retries)
        signals.on_stop(part.stop)
        # the main thread only waits: a handler that sets the Event while this
        # thread held its lock would deadlock, which a join cannot do
        part.thread.join()
    log.info("reaper stopped")


for command in (commands_jobs.post, commands_jobs.status, commands_jobs.result,
                commands_jobs.deadletter, commands_jobs.clear_all, top.top):
    cli.add_command(command)
