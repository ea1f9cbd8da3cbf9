"""The `controller` command line (SPEC §8): the click group and the long-running
commands (`consumer`, `server`, `reaper`), whose parts live in controller/running.py.

The job commands live in controller/commands_jobs.py.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import redis

from mlq import defaults
from mlq.errors import REDIS_DOWN, JobNotFound, MLQError
from mlq.keys import DEFAULT_QUEUE
from mlq.streams import STREAM_MAX

from . import commands_jobs, commands_lifecycle, commands_lists, logs, top
from .running import (
    PARENT_PIPE_VAR, ReaperThread, ServerProcess, StopSignals, embedded_default,
    make_supervisor, setup_logging,
)
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
@option("cancel_grace", type=click.FloatRange(min=0), default=10.0, show_default=True,
        metavar="SECONDS", help="A job cancelled while it runs that still runs this long "
                                "after is stopped (its worker process killed).")
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
@option("stream_max", type=click.IntRange(min=1), default=STREAM_MAX, show_default=True,
        help="Chunks a job's stream keeps (a listener's yields or emit()s); older ones "
             "give way.")
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
                commands_lists.jobs, commands_lists.workers, commands_lists.functions,
                commands_lists.deadletter, commands_lists.clear_all, top.top,
                commands_lifecycle.cancel, commands_lifecycle.cron,
                commands_lifecycle.queue_group):
    cli.add_command(command)
