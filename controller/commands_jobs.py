"""The short commands that act on one job: post, status, result (cancel, cron and
queue live in controller/commands_lifecycle.py; jobs, workers, functions,
deadletter and clear_all in controller/commands_lists.py).

Each is thin (parse, call one MLQ method, format); errors become one line and
an exit code in the group's handler (controller/cli.py).
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from mlq.job import CANCELLED, COMPLETED, EXPIRED, FAILED, TERMINAL
from mlq.position import InLine
from mlq.queue import MLQ
from mlq.streams import End, entries

from .display import summarize_bytes
from .options import (
    CliError, ConnectionSettings, connection_options, functions_option, lifecycle_options,
    open_mlq, option, priority_option, queue_option, split_names, timeout_option,
    wait_timeout_option,
)

#: The counters `status` shows for a namespace (the run-time histogram stays in /metrics).
STAT_FIELDS = ("waiting", "waiting_by_queue", "scheduled", "deferred", "processing", "dead",
               "posted", "completed", "failed", "cancelled", "expired", "requeued", "retried")


# -- formatting -------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return str(value)


def to_json(value: Any, indent: int | None = 2) -> str:
    """JSON text for records: bytes appear as {"base64": "..."} (as over HTTP)."""
    return json.dumps(value, indent=indent, default=_json_default, ensure_ascii=False)


def parse_message(text: str) -> Any:
    """MSG as JSON when it is valid JSON, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text
    except RecursionError:
        raise click.UsageError("MSG is nested too deeply to parse") from None


def post_message(text: str, raw: bool) -> Any:
    """`post`'s MSG: as parse_message, but text that opens like a JSON object or
    array and does not parse is refused (a lost quote would otherwise post the
    text as a string, and the listener fail far from the typo); --raw sends any
    text as a string."""
    if raw:
        return text
    opening = text.lstrip()[:1]
    if opening not in ("{", "["):
        return parse_message(text)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"MSG starts with {opening!r} but is not valid JSON: {exc} "
                       "(--raw sends it as a string)") from None
    except RecursionError:
        raise click.UsageError("MSG is nested too deeply to parse") from None


def result_bytes(result: Any) -> bytes:
    """The result as a file holds it: bytes as they are, str as UTF-8, others as JSON."""
    if isinstance(result, (bytes, bytearray)):
        return bytes(result)
    if isinstance(result, str):
        return result.encode("utf-8")
    return to_json(result, indent=None).encode("utf-8")


def write_file(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from exc


def fail_job_exit(record: dict[str, Any]) -> None:
    """Report a failed job on stderr and exit 1."""
    click.echo(f"job {record['id']} failed: {record['result']}", err=True)
    error = record.get("error")
    if error and error != record["result"]:
        click.echo(str(error).rstrip(), err=True)
    sys.exit(1)


# -- post -------------------------------------------------------------------------------
@click.command()
@click.argument("msg")
@option("raw", is_flag=True, help="Send MSG as a string, without reading it as JSON.")
@option("callback", metavar="URL", help="URL that gets a GET when the job ends.")
@functions_option
@timeout_option
@queue_option
@priority_option
@option("owner", default=None, help="Who the job is for (fair sharing between owners).")
@lifecycle_options
@option("wait", is_flag=True, help="Show a progress bar until the job ends, then its short result.")
@option("stream", is_flag=True,
        help="Print the job's streamed chunks as they come, until it ends (text as it is, "
             "other values as JSON lines).")
@wait_timeout_option
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="With --wait: write the full result to this file.")
@connection_options
def post(conn: ConnectionSettings, msg: str, raw: bool, callback: str | None,
         functions: tuple[str, ...], timeout: float | None, queue: str, priority: int,
         owner: str | None, life: dict[str, Any], wait: bool, stream: bool,
         wait_timeout: float | None, output: Path | None) -> None:
    """Enqueue a job and print its id.

    MSG is parsed as JSON when it is valid JSON, else sent as a string; text
    that starts with { or [ but is not valid JSON is refused (exit 2) unless
    --raw, which sends MSG as a string. With --wait a progress bar runs on
    stderr until the job ends; then the short result is printed (or the result
    written to -o FILE). Exit 1 if the job failed, or if the wait passed
    --wait_timeout, or else --timeout, first. With --stream, the chunks a generator listener yields are printed
    as they come instead. With --key, a job of that key that is still alive is
    not posted again: its id is printed, and stderr says it is a duplicate.

    \b
    Examples:
      controller post '{"text": "hello"}'
      controller post hello --functions clean,translate --timeout 60
      controller post '{"prompt": "a cat"}' --queue gpu --priority 5 --owner alice
      controller post '{"url": "https://example.com/a.jpg"}' --wait -o out.png
      controller post '{"prompt": "tell me a story"}' --functions generate --stream
      controller post '{"text": "hi"}' --wait --timeout 30
      controller post '{"text": "hi"}' --timeout 600 --wait --wait_timeout 30
      controller post '{not json' --raw
      controller post report --at 2026-12-24T08:00:00Z --expires 3600
      controller post fetch --retries 5 --backoff 2 --retry_on ConnectionError
      controller post resize --key resize:42 --depends_on 7 --depends_on 8
    """
    check_waiting(wait, stream, wait_timeout, output)
    mlq = open_mlq(conn)
    posted = mlq.enqueue(post_message(msg, raw), callback, split_names(functions),
                         timeout=timeout, queue=queue, priority=priority, owner=owner, **life)
    job_id = posted.id
    click.echo(job_id)
    if posted.duplicate:
        click.echo(f"duplicate: job {job_id} holds key {life['key']!r}; nothing posted",
                   err=True)
    if not (wait or stream):
        return
    sys.stdout.flush()  # the id is useful while the job runs
    # --timeout, the job's own limit, also bounds a wait unless --wait_timeout says otherwise
    limit = WaitLimit(mlq, job_id, timeout if wait_timeout is None else wait_timeout)
    streamed = stream and print_chunks(mlq, job_id, limit)
    show_outcome(limit.wait() if stream else follow(mlq, job_id, limit), output, streamed)


def check_waiting(wait: bool, stream: bool, wait_timeout: float | None,
                  output: Path | None) -> None:
    """Refuse the flags of post that do not go together, before anything is posted."""
    if output is not None and not wait:
        raise click.UsageError("-o/--output needs --wait (or use: controller result ID -o FILE)")
    if wait and stream:
        raise click.UsageError("--wait and --stream exclude each other: pick one")
    if wait_timeout is not None and not (wait or stream):
        raise click.UsageError("--wait_timeout needs --wait or --stream "
                               "(--timeout is the job's own time limit)")


class WaitLimit:
    """How long post --wait/--stream may wait (--wait_timeout): past it, exit 1 and
    say where the job stands; the job itself stays posted and may still run."""

    def __init__(self, mlq: MLQ, job_id: str, seconds: float | None) -> None:
        self.mlq, self.job_id, self.seconds = mlq, job_id, seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds
        # a quiet wait wakes at least this often, to notice the deadline in time
        self.keepalive = 1.0 if seconds is None else min(1.0, seconds)

    def check(self) -> None:
        """Exit 1 if the wait is over."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise self.timed_out()

    def timed_out(self) -> CliError:
        now = self.mlq.get_job(self.job_id, fields=["status"])["status"]
        return CliError(f"job {self.job_id} did not end within {self.seconds:g} s (it is "
                        f"{now}; it stays posted: controller cancel {self.job_id} "
                        "drops it)", 1)

    def wait(self) -> dict[str, Any]:
        """The job's final record, within what is left of the limit."""
        left = None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)
        try:
            return self.mlq.wait(self.job_id, left)
        except TimeoutError:
            raise self.timed_out() from None


def show_outcome(record: dict[str, Any], output: Path | None, streamed: bool) -> None:
    """What post --wait/--stream prints once the job ended; exit 1 unless it completed."""
    job_id = record["id"]
    if record["status"] == FAILED:
        fail_job_exit(record)
    if record["status"] in (CANCELLED, EXPIRED):  # ended without a result
        raise CliError(f"job {job_id} {record['status']}", 1)
    if output is not None:
        write_file(output, result_bytes(record["result"]))
    elif streamed:
        return  # the chunks were the output
    elif record["short_result"] is not None:
        click.echo(record["short_result"])
    elif isinstance(record["result"], (bytes, bytearray)):
        click.echo(f"binary result ({len(record['result'])} bytes): "
                   f"controller result {job_id} -o FILE", err=True)


def print_chunks(mlq: MLQ, job_id: str, limit: WaitLimit) -> bool:
    """Print the job's chunks as they come, until it ends; whether there were any."""
    line_open = printed = False
    for entry in entries(mlq, job_id, keepalive=limit.keepalive):
        if isinstance(entry, End):
            break
        limit.check()
        if entry is None:
            continue  # a keep-alive: only time to look at the clock
        chunk, printed = entry.value, True
        if isinstance(chunk, (bytes, bytearray)):
            sys.stdout.flush()
            sys.stdout.buffer.write(chunk)
            text = ""
        else:
            text = chunk if isinstance(chunk, str) else to_json(chunk, indent=None) + "\n"
        sys.stdout.write(text)
        sys.stdout.flush()
        line_open = bool(text) and not text.endswith("\n")
    if line_open:
        sys.stdout.write("\n")  # the prompt after us starts on a line of its own
    return printed


def follow(mlq: MLQ, job_id: str, limit: WaitLimit) -> dict[str, Any]:
    """Drive a progress bar on stderr from the job's pushed events; its final record."""
    bar = tqdm(total=100, desc=f"job {job_id}", file=sys.stderr, mininterval=0,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}", dynamic_ncols=True)
    # while it waits: "#4 in line, ~40 s", read again each second (the keep-alive)
    in_line, last = InLine(mlq, job_id), None
    try:
        for event in mlq.watch(job_id, keepalive=limit.keepalive):
            last = event or last
            if last is not None:
                _show(bar, job_id, last, in_line.text(last["status"]))
            if last is None or last["status"] not in TERMINAL:
                limit.check()
    finally:
        bar.close()
    return mlq.get_job(job_id)


def _show(bar: tqdm, job_id: str, event: dict[str, Any], in_line: str | None = None) -> None:
    status, progress = event["status"], event["progress"]
    if status == COMPLETED:
        progress = 100
    number = isinstance(progress, (int, float)) and not isinstance(progress, bool)
    if number and 0 <= progress <= 100:
        bar.n = progress
    # a listener may report progress as text ("step 3/5"): show it beside the status
    text = status if number or progress is None else f"{status} {progress}"
    if in_line:
        text = f"{text}, {in_line}"
    bar.set_description_str(f"job {job_id} {text}", refresh=False)
    bar.refresh()


# -- status and result ------------------------------------------------------------------
@click.command()
@click.argument("job_id", required=False)
@option("full", is_flag=True, help="Show a binary result's bytes, as base64.")
@connection_options
def status(conn: ConnectionSettings, job_id: str | None, full: bool) -> None:
    """Print a job's record as JSON; without JOB_ID, the namespace's counts.

    Bytes in the record appear as {"base64": "..."}, except in the result:
    there each is shown as its size and type, {"bytes": 12345, "type":
    "image/png"}, unless --full (`controller result ID -o FILE` writes it).

    \b
    Examples:
      controller status 12
      controller status 12 --full
      controller status --namespace images
    """
    mlq = open_mlq(conn)
    if job_id is not None:
        record = mlq.get_job(job_id)
        if not full:
            record["result"] = summarize_bytes(record["result"])
        click.echo(to_json(record))
        return
    stats = mlq.stats()
    click.echo(to_json({"namespace": conn.namespace, **{k: stats[k] for k in STAT_FIELDS}}))


@click.command()
@click.argument("job_id")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the result to this file.")
@connection_options
def result(conn: ConnectionSettings, job_id: str, output: Path | None) -> None:
    """Print a finished job's result, or write it to -o FILE.

    Text is printed; other values as JSON; binary results go to FILE, or to
    stdout when it is not a terminal. Exit 1 if the job failed, was cancelled
    or expired, or has not finished yet.

    \b
    Examples:
      controller result 12
      controller result 12 -o picture.png
      controller result 12 > picture.png
    """
    record = open_mlq(conn).get_job(job_id)
    if record["status"] == FAILED:
        fail_job_exit(record)
    if record["status"] in (CANCELLED, EXPIRED):
        raise CliError(f"job {record['id']} {record['status']}: it has no result", 1)
    if record["status"] != COMPLETED:
        raise CliError(f"job {record['id']} has no result yet (status {record['status']})", 1)
    value = record["result"]
    if output is not None:
        write_file(output, result_bytes(value))
    elif isinstance(value, (bytes, bytearray)):
        if sys.stdout.isatty():
            raise CliError(f"the result is binary ({len(value)} bytes): use -o FILE "
                           "or redirect stdout")
        sys.stdout.buffer.write(value)
        sys.stdout.flush()
    else:
        click.echo(value if isinstance(value, str) else to_json(value, indent=None))
