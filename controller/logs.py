"""Log output of the long-running commands: text for people, JSON lines for machines.

``--log_format json`` writes one JSON object per line, so a log shipper (Loki,
Elasticsearch, CloudWatch) can index it without a parsing rule. Every field a
log call passes with ``extra=`` becomes a key of its own: the worker's job
events carry ``job_id``, ``queue``, ``function``, ``attempt``, ``error_kind`` and
``duration`` that way (mlq/joblog.py), so "every job that took over 60 s" is a
query, not a regular expression over messages.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import IO, Any

import click

from .options import option

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")

#: Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}

log_format_option = option(
    "log_format", type=click.Choice(FORMATS), default="text", show_default=True,
    envvar="MLQ_LOG_FORMAT",
    help="Log lines as text, or as one JSON object per line (job events carry job_id, "
         "queue, function, attempt, error_kind and duration) [env: MLQ_LOG_FORMAT]")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, pid, and every extra."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            # UTC with an offset: lines from machines in other zones sort together
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
                      .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # also a traceback logged as text (mlq.joblog)
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that JSON cannot hold is still logged, as text;
        # a log line must never raise
        return json.dumps(entry, default=str, ensure_ascii=False)


class _StreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes nothing once closed.

    logging.shutdown() closes every handler at exit, holding each one's lock, so
    no write is under way then. Daemon threads (heartbeats, pub/sub followers)
    may still log after it, while the interpreter finalizes; a thread stopped
    there in the middle of a write would hold the stream's lock, and the final
    flush of stderr would abort with "Fatal Python error: _enter_buffered_busy".
    """

    closed = False

    def close(self) -> None:
        self.acquire()
        try:
            self.closed = True
            super().close()
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        if not self.closed:
            super().emit(record)


def make_handler(log_format: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) writing `log_format` lines, silent once closed."""
    handler = _StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    return handler


def setup(log_format: str = "text", level: int = logging.INFO) -> None:
    """Configure the root logger of a command (once; as logging.basicConfig does)."""
    logging.basicConfig(level=level, handlers=[make_handler(log_format)])


def setup_json_child(level: int) -> None:
    """JSON logs in a worker process the supervisor spawned.

    Module-level, so it pickles by reference into a spawned child (see the
    proposed `log_setup` of mlq.supervisor.ChildConfig).
    """
    setup("json", level)
