"""Options shared by the `controller` commands, and the one place that opens MLQ.

Every command takes the same connection options from `connection_options`
(rq's idea: one decorator rather than a copy per command), and every option
with an underscore also answers to its dashed spelling (`--server_port` and
`--server-port`).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click
import redis

from mlq import defaults
from mlq.errors import InvalidMessage
from mlq.keys import DEFAULT_QUEUE
from mlq.lifecycle import MAX_RETRIES, parse_time
from mlq.queue import MLQ

log = logging.getLogger("mlq.cli")

F = TypeVar("F", bound=Callable[..., Any])

#: Where a command keeps its ConnectionSettings, so the group's error handler
#: can say which Redis it could not reach.
META_KEY = "mlq.connection"


class CliError(click.ClickException):
    """An expected failure: one line on stderr and an exit code (2 unless told)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def option(name: str, *more: str, **kwargs: Any) -> Callable[[F], F]:
    """click.option for `--name` that also accepts the dashed spelling of `name`."""
    decls = [f"--{name}"]
    if "_" in name:
        decls.append(f"--{name.replace('_', '-')}")
    return click.option(*decls, *more, name, **kwargs)


class ByteSize(click.ParamType):
    """A size in bytes: `1048576`, or with a K/M/G suffix in powers of 1024 (`64M`)."""

    name = "size"
    _UNITS: ClassVar[dict[str, int]] = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
    _PATTERN: ClassVar[re.Pattern[str]] = re.compile(r"^\s*(\d+)\s*([KMG]?)(?:I?B)?\s*$",
                                                     re.IGNORECASE)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = self._PATTERN.match(str(value))
        if not match:
            self.fail(f"{value!r} is not a size (examples: 1048576, 512K, 64M, 1G)", param, ctx)
        return int(match.group(1)) * self._UNITS[match.group(2).upper()]


class PointInTime(click.ParamType):
    """A moment: epoch seconds (`1798099200`) or ISO 8601 text (`2026-12-24T08:00:00Z`),
    read as MLQ.post reads `at`; the value is epoch seconds."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        text = str(value).strip()
        try:
            moment: Any = float(text)
        except ValueError:
            moment = text
        try:
            return parse_time(moment)
        except InvalidMessage as exc:
            self.fail(str(exc), param, ctx)


def split_names(values: Iterable[str]) -> list[str] | None:
    """`--functions a,b --functions c` -> ['a', 'b', 'c']; None when none given."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return names or None


@dataclass(frozen=True)
class ConnectionSettings:
    """Which Redis and namespace a command works on, as the user gave them."""

    namespace: str
    url: str | None = None
    host: str | None = None
    port: int | None = None
    db: int = 0

    @property
    def named(self) -> bool:
        """True when the user named a Redis (URL, host or port), see SPEC §1."""
        return bool(self.url or self.host or self.port)

    @property
    def redis_url(self) -> str:
        """One URL for the named server (the supervisor's children take a URL)."""
        if self.url:
            return self.url
        host = self.host or "localhost"
        if ":" in host:  # an IPv6 literal needs brackets in a URL
            host = f"[{host}]"
        return f"redis://{host}:{self.port or 6379}/{self.db}"

    @property
    def display(self) -> str:
        """The URL with any password masked, for messages and logs."""
        parts = urlsplit(self.redis_url)
        if parts.password is None:
            return self.redis_url
        netloc = f"{parts.username or ''}:***@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def with_url(self, url: str) -> ConnectionSettings:
        """The same namespace on another server (the embedded one)."""
        return replace(self, url=url, host=None, port=None, db=0)


def connection_options(function: F) -> F:
    """Add --redis_host/--redis_port/--redis_db/--redis_url/--namespace to a command.

    The command receives them as one `conn: ConnectionSettings` argument.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, redis_host: str | None, redis_port: int | None, redis_db: int,
                redis_url: str | None, namespace: str, **kwargs: Any) -> Any:
        conn = ConnectionSettings(namespace, redis_url or None, redis_host, redis_port, redis_db)
        click.get_current_context().meta[META_KEY] = conn
        return function(*args, conn=conn, **kwargs)

    decorators = [
        option("redis_host", default=None, metavar="HOST",
               help="Redis host  [default: localhost]"),
        option("redis_port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
               help="Redis port  [default: 6379]"),
        option("redis_db", type=click.IntRange(min=0), default=0, show_default=True,
               help="Redis database number."),
        option("redis_url", envvar="MLQ_REDIS_URL", default=None, metavar="URL",
               help="Redis URL, e.g. redis://:password@host:6379/0 (wins over host/port) "
                    "[env: MLQ_REDIS_URL]"),
        option("namespace", envvar="MLQ_NAMESPACE", default=defaults.NAMESPACE,
               show_default=True, help="Namespace of the queue [env: MLQ_NAMESPACE]"),
    ]
    for decorate in reversed(decorators):
        wrapper = decorate(wrapper)
    return wrapper  # type: ignore[return-value]


def check_tokens(token: str | None, admin_token: str | None) -> None:
    """Refuse, before anything starts, a token too short to stand up to guessing."""
    from controller.auth import check_token_strength

    try:
        check_token_strength(token, "--token")
        check_token_strength(admin_token, "--admin_token")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def open_mlq(conn: ConnectionSettings, *, wait_for: float | None | bool = False,
             stop: Callable[[], bool] = lambda: False, check: bool = True,
             **kwargs: Any) -> MLQ:
    """An MLQ on `conn`, checked with a PING.

    `wait_for`: False (one-shot commands) fails at once with CliError (exit 2);
    otherwise a long-running command waits for Redis, retrying with backoff and
    logging each retry, for at most `wait_for` seconds (None: no bound), or until
    `stop()` says the command was asked to stop. Under Kubernetes, compose or
    systemd, Redis may well start after the commands that need it. `check=False`:
    no PING at all (the HTTP server, whose /healthz reports Redis instead).
    """
    try:
        mlq = MLQ(conn.namespace, conn.host or "localhost", conn.port or 6379, conn.db,
                  redis_url=conn.url, **kwargs)
    except ValueError as exc:  # a malformed URL, a bad namespace
        raise click.UsageError(str(exc)) from exc
    if not check:
        return mlq
    deadline = None if wait_for in (None, False) else time.monotonic() + float(wait_for)
    delay = defaults.RECONNECT_BACKOFF[0]
    while True:
        try:
            mlq.ping()
            return mlq
        except redis.RedisError as exc:
            out_of_time = deadline is not None and time.monotonic() + delay > deadline
            if wait_for is False or out_of_time or stop():
                raise CliError(unreachable_message(conn, exc)) from exc
            log.warning("Redis at %s is not reachable yet (%s); retrying in %.1f s",
                        conn.display, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, defaults.RECONNECT_BACKOFF[1])


def unreachable_message(conn: ConnectionSettings | None, exc: BaseException) -> str:
    """One line saying which Redis failed and why."""
    where = f" at {conn.display}" if conn else ""
    return f"cannot reach Redis{where}: {exc}"


# -- options that several commands share ----------------------------------------------
secret_option = option(
    "secret", envvar="MLQ_SECRET", default=None,
    help="Shared secret: run only listener code signed with it [env: MLQ_SECRET]")
token_option = option(
    "token", envvar="MLQ_TOKEN", default=None,
    help="API token the HTTP server requires as 'Authorization: Bearer ...' [env: MLQ_TOKEN]")
admin_token_option = option(
    "admin_token", envvar="MLQ_ADMIN_TOKEN", default=None,
    help="Token for uploading code and changing dead letters; without it --token "
         "covers both [env: MLQ_ADMIN_TOKEN]")
allowed_hosts_option = option(
    "allowed_hosts", envvar="MLQ_ALLOWED_HOSTS", default="", metavar="A,B",
    help="Host names the HTTP server answers besides loopback and its own address "
         "('*': any) [env: MLQ_ALLOWED_HOSTS]")
max_depth_option = option(
    "max_depth", type=click.IntRange(min=1, max=500), default=64, show_default=True,
    help="Deepest nesting of lists and objects POST /jobs accepts (deeper: 400).")
max_auth_failures_option = option(
    "max_auth_failures", type=click.IntRange(min=1), default=10, show_default=True,
    help="Bad tokens a client address may send a minute before it gets 429.")
header_timeout_option = option(
    "header_timeout", type=click.FloatRange(min=0, min_open=True), default=10.0,
    show_default=True,
    help="Seconds a client may take to send a request's headers (or sit idle between requests).")
max_connections_option = option(
    "max_connections", type=click.IntRange(min=1), default=1000, show_default=True,
    help="Connections served at once; the slowest to send its headers is cut to make room.")
max_streams_option = option(
    "max_streams", type=click.IntRange(min=1), default=500, show_default=True,
    help="Event streams (events and chunks) open at once; beyond, 503.")
#: --yes of the commands that delete: skip the confirmation prompt.
yes_option = option("yes", is_flag=True, help="Do not ask for confirmation.")
max_message_size_option = option(
    "max_message_size", type=ByteSize(), default=str(defaults.MAX_MESSAGE_SIZE),
    help="Largest message that may be posted, by POST /jobs or by a listener (K/M/G).")
max_function_size_option = option(
    "max_function_size", type=ByteSize(), default=str(defaults.MAX_FUNCTION_SIZE),
    help="Largest listener function that may be registered (POST /consumer too).")
min_replicas_option = option(
    "min_replicas", type=click.IntRange(min=0), default=0, show_default=True,
    help="Acknowledge a post only once this many replicas hold the job (Redis WAIT); "
         "without it, a failover may lose jobs posted in the last moment before it.")
behind_tls_option = option(
    "behind_tls", is_flag=True,
    help="A proxy in front ends TLS: mark the dashboard's cookies Secure.")
wait_for_redis_option = option(
    "wait_for_redis", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
    help="How long to wait for Redis at start-up, retrying with backoff  [default: no bound]")
insecure_option = option(
    "insecure", is_flag=True, help="Allow a non-loopback --server_address without a token.")
max_body_option = option(
    "max_body", type=ByteSize(), default="64M", show_default=True,
    help="Largest request body the HTTP server accepts (bytes, or K/M/G).")
result_cache_option = option(
    "result_cache", envvar="MLQ_RESULT_CACHE", type=ByteSize(),
    default=f"{defaults.RESULT_CACHE // 1024 ** 2}M", show_default=True,
    help="Memory the HTTP server keeps recently served results in (K/M/G; 0: none) "
         "[env: MLQ_RESULT_CACHE]")
server_address_option = option(
    "server_address", default="127.0.0.1", show_default=True, help="Address the HTTP server binds.")
server_port_option = option(
    "server_port", type=click.IntRange(0, 65535), default=5000, show_default=True,
    help="Port the HTTP server listens on.")
data_dir_option = option(
    "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Data directory of the embedded Redis, used when no Redis is named and none "
         "answers on 127.0.0.1:6379  [default: ~/.local/share/mlq]")
heartbeat_timeout_option = option(
    "heartbeat_timeout", type=click.FloatRange(min=0, min_open=True),
    default=defaults.HEARTBEAT_TIMEOUT, show_default=True,
    help="Seconds without a heartbeat after which a worker is dead.")
reaper_interval_option = option(
    "reaper_interval", type=click.FloatRange(min=0, min_open=True),
    default=defaults.REAPER_INTERVAL, show_default=True, help="Seconds between reaper sweeps.")
reaper_timeout_option = option(
    "reaper_timeout", type=click.FloatRange(min=0, min_open=True),
    default=defaults.REAPER_JOB_TIMEOUT, show_default=True,
    help="A job started longer ago than this many seconds is taken back.")
reaper_retries_option = option(
    "reaper_retries", type=click.IntRange(min=1), default=defaults.MAX_RETRIES,
    show_default=True, help="Attempts before a recovered job is failed.")


def http_server_options(function: F) -> F:
    """The HTTP server's options, shared by `server` and `consumer` (for --server)."""
    for decorate in reversed((server_address_option, server_port_option, max_body_option,
                              token_option, admin_token_option, allowed_hosts_option,
                              max_depth_option, max_auth_failures_option,
                              header_timeout_option, max_connections_option,
                              max_streams_option, min_replicas_option, behind_tls_option,
                              insecure_option, result_cache_option)):
        function = decorate(function)
    return function


# -- what a job is, for `post` and `cron add` ---------------------------------------
functions_option = option(
    "functions", multiple=True, metavar="NAMES",
    help="Run only these listeners, in this order; repeat or separate with commas.")
timeout_option = option(
    "timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
    help="Time limit of the job in seconds.")
queue_option = option("queue", default=DEFAULT_QUEUE, show_default=True, help="Queue to post to.")
priority_option = option("priority", type=click.IntRange(0, 9), default=0, show_default=True,
                         help="0-9; higher runs first.")
#: How long `post --wait` / `--stream` waits. Not `--timeout`: that flag is the job's
#: own time limit (as for `cron add`, and MLQ.post's `timeout`), which scripts set.
wait_timeout_option = option(
    "wait_timeout", type=click.FloatRange(min=0, min_open=True), default=None,
    metavar="SECONDS",
    help="With --wait or --stream: give up after this long, exit 1 (the job stays "
         "posted). --timeout is the job's own time limit.")

#: `post`'s flags for a job's life (docs/lifecycle.md), named as MLQ.post's keywords.
LIFECYCLE_DECORATORS = (
    option("delay", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
           help="Wait this long before the job may start (status: scheduled)."),
    option("at", type=PointInTime(), default=None, metavar="TIME",
           help="When the job may start: epoch seconds or ISO 8601 "
                "(2026-12-24T08:00:00Z; no zone means UTC). Not with --delay."),
    option("expires", type=click.FloatRange(min=0, min_open=True), default=None,
           metavar="SECONDS", help="Not started within this long: it ends expired, unrun."),
    option("retries", type=click.IntRange(0, MAX_RETRIES), default=None, metavar="N",
           help="Attempts again after an exception  [default: 0]"),
    option("backoff", type=click.FloatRange(min=0), default=None, metavar="S",
           help="Base delay of a retry (full jitter, doubling each time)  [default: 1]"),
    option("backoff_max", type=click.FloatRange(min=0), default=None, metavar="S",
           help="Longest delay of a retry  [default: 600]"),
    option("retry_on", multiple=True, metavar="NAME",
           help="Retry only these exception classes (repeatable)  [default: any]"),
    option("key", default=None, help="Dedup key: while a job posted with it lives, "
                                     "posting it again returns that job's id."),
    option("key_ttl", type=click.FloatRange(min=0), default=None, metavar="S",
           help="Seconds the key still answers after its job ended (needs --key)."),
    option("depends_on", multiple=True, metavar="ID",
           help="Queue the job only once this job completed (repeatable)."),
)
LIFECYCLE_FLAGS = ("delay", "at", "expires", "retries", "backoff", "backoff_max", "retry_on",
                   "key", "key_ttl", "depends_on")


def lifecycle_options(function: F) -> F:
    """Add `post`'s lifecycle flags; the command receives those given as one
    `life` dict of MLQ.post keywords (left out, MLQ's defaults apply)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in LIFECYCLE_FLAGS}
        for name in ("retry_on", "depends_on"):
            given[name] = split_names(given[name])
        life = {name: value for name, value in given.items() if value is not None}
        return function(*args, life=life, **kwargs)

    for decorate in reversed(LIFECYCLE_DECORATORS):
        wrapper = decorate(wrapper)
    return wrapper  # type: ignore[return-value]
