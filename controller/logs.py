"""Log output of the long-running commands: text for people, JSON lines for machines.

``--log_format json`` writes one JSON object per line, so a log shipper (Loki,
Elasticsearch, CloudWatch) can index it without a parsing rule. Every field a
log call passes with ``extra=`` becomes a key of its own: the worker's job
events carry ``job_id``, ``worker_id`` and ``duration`` that way, so "every job
that took over 60 s" is a query, not a regular expression over messages.
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
         "worker_id and duration) [env: MLQ_LOG_FORMAT]")


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
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that JSON cannot hold is still logged, as text;
        # a log line must never raise
        return json.dumps(entry, default=str, ensure_ascii=False)


def make_handler(log_format: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) writing `log_format` lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
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
