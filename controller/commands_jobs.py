"""The short commands that act on jobs: post, status, result, deadletter, clear_all
(cancel, cron and queue live in controller/commands_lifecycle.py).

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

from mlq.job import CANCELLED, COMPLETED, EXPIRED, FAILED
from mlq.position import InLine
from mlq.queue import MLQ

from .options import (
    CliError, ConnectionSettings, connection_options, functions_option, lifecycle_options,
    open_mlq, option, priority_option, queue_option, split_names, timeout_option, yes_option,
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
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="With --wait: write the full result to this file.")
@connection_options
def post(conn: ConnectionSettings, msg: str, callback: str | None, functions: tuple[str, ...],
         timeout: float | None, queue: str, priority: int, owner: str | None,
         life: dict[str, Any], wait: bool, stream: bool, output: Path | None) -> None:
    """Enqueue a job and print its id.

    MSG is parsed as JSON when it is valid JSON, else sent as a string. With
    --wait a progress bar runs on stderr until the job ends; then the short
    result is printed (or the result written to -o FILE). Exit 1 if the job
    failed. With --stream, the chunks a generator listener yields are printed
    as they come instead. With --key, a job of that key that is still alive is
    not posted again: its id is printed, and stderr says it is a duplicate.

    \b
    Examples:
      controller post '{"text": "hello"}'
      controller post hello --functions clean,translate --timeout 60
      controller post '{"prompt": "a cat"}' --queue gpu --priority 5 --owner alice
      controller post '{"url": "https://example.com/a.jpg"}' --wait -o out.png
      controller post '{"prompt": "tell me a story"}' --functions generate --stream
      controller post report --at 2026-12-24T08:00:00Z --expires 3600
      controller post fetch --retries 5 --backoff 2 --retry_on ConnectionError
      controller post resize --key resize:42 --depends_on 7 --depends_on 8
    """
    if output is not None and not wait:
        raise click.UsageError("-o/--output needs --wait (or use: controller result ID -o FILE)")
    if wait and stream:
        raise click.UsageError("--wait and --stream exclude each other: pick one")
    mlq = open_mlq(conn)
    posted = mlq.enqueue(parse_message(msg), callback, split_names(functions), timeout=timeout,
                         queue=queue, priority=priority, owner=owner, **life)
    job_id = posted.id
    click.echo(job_id)
    if posted.duplicate:
        click.echo(f"duplicate: job {job_id} holds key {life['key']!r}; nothing posted",
                   err=True)
    if not (wait or stream):
        return
    sys.stdout.flush()  # the id is useful while the job runs
    streamed = stream and print_chunks(mlq, job_id)
    show_outcome(mlq.wait(job_id) if stream else follow(mlq, job_id), output, streamed)


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


def print_chunks(mlq: MLQ, job_id: str) -> bool:
    """Print the job's chunks as they come, until it ends; whether there were any."""
    line_open = printed = False
    for _, chunk in mlq.stream(job_id):
        printed = True
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


def follow(mlq: MLQ, job_id: str) -> dict[str, Any]:
    """Drive a progress bar on stderr from the job's pushed events; its final record."""
    bar = tqdm(total=100, desc=f"job {job_id}", file=sys.stderr, mininterval=0,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}", dynamic_ncols=True)
    # while it waits: "#4 in line, ~40 s", read again each second (the keep-alive)
    in_line, last = InLine(mlq, job_id), None
    try:
        for event in mlq.watch(job_id, keepalive=1.0):
            last = event or last
            if last is not None:
                _show(bar, job_id, last, in_line.text(last["status"]))
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
@connection_options
def status(conn: ConnectionSettings, job_id: str | None) -> None:
    """Print a job's record as JSON; without JOB_ID, the namespace's counts.

    \b
    Examples:
      controller status 12
      controller status --namespace images
    """
    mlq = open_mlq(conn)
    if job_id is not None:
        click.echo(to_json(mlq.get_job(job_id)))
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


# -- dead letters and clearing ----------------------------------------------------------
@click.group()
def deadletter() -> None:
    """Inspect, requeue or purge failed jobs (the dead-letter queue).

    \b
    Examples:
      controller deadletter list
      controller deadletter requeue 12
      controller deadletter purge --yes
    """


@deadletter.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the full records as JSON.")
@connection_options
def deadletter_list(conn: ConnectionSettings, as_json: bool) -> None:
    """List the dead jobs, oldest first.

    \b
    Examples:
      controller deadletter list
      controller deadletter list --json
    """
    records = open_mlq(conn).dead_letters()
    if as_json:
        click.echo(to_json(records))
        return
    for record in records:
        finished = record["processing_finished"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(finished)) if finished else "-"
        reason = str(record["result"]).strip().splitlines()
        click.echo(f"{record['id']}\t{when}\tretries={record['retries']}\t"
                   f"{reason[0] if reason else ''}")


@deadletter.command("requeue")
@click.argument("job_id", required=False)
@connection_options
def deadletter_requeue(conn: ConnectionSettings, job_id: str | None) -> None:
    """Put one dead job (or all) back in its queue as a fresh attempt.

    \b
    Examples:
      controller deadletter requeue 12
      controller deadletter requeue
    """
    count = open_mlq(conn).requeue_dead(job_id)
    click.echo(f"requeued {count}")


@deadletter.command("purge")
@click.argument("job_id", required=False)
@yes_option
@connection_options
def deadletter_purge(conn: ConnectionSettings, job_id: str | None, yes: bool) -> None:
    """Delete one dead job (or all of them) for good; asks first unless --yes.

    \b
    Examples:
      controller deadletter purge 12
      controller deadletter purge --yes
    """
    mlq = open_mlq(conn)
    what = f"dead job {job_id}" if job_id else "every dead job"
    confirm(f"Delete {what} of namespace {conn.namespace!r}?", yes)
    click.echo(f"purged {mlq.purge_dead(job_id)}")


@click.command("clear_all")
@yes_option
@connection_options
def clear_all(conn: ConnectionSettings, yes: bool) -> None:
    """Delete every key of the namespace (jobs, results, listeners); asks first.

    \b
    Examples:
      controller clear_all --namespace scratch
      controller clear_all --yes
    """
    mlq = open_mlq(conn)
    confirm(f"Delete every key of namespace {conn.namespace!r} on {conn.display}?", yes)
    click.echo(f"deleted {mlq.clear_all()} keys")


def confirm(question: str, yes: bool) -> None:
    """Ask `question` unless `yes`; a no (or no terminal to ask on) exits 1."""
    if yes:
        return
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort:  # end of input: nobody said yes
        agreed = False
        click.echo("", err=True)
    if not agreed:
        raise CliError("nothing deleted", 1)
