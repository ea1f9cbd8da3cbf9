"""The commands that steer a job's life after its post (docs/lifecycle.md):
cancel, cron (periodic jobs) and queue (pause and resume).

Thin, as controller/commands_jobs.py: parse, call MLQ, format; MLQ's own errors
become one line and exit 2 in the group's handler (controller/cli.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone as dt_timezone
from typing import Any

import click

from mlq.errors import InvalidMessage, JobNotFound
from mlq.job import STARTED
from mlq.queue import MLQ
from mlq.schedules import next_slot, zone

from .commands_jobs import post_message, to_json
from .options import (
    CliError, ConnectionSettings, connection_options, functions_option, open_mlq, option,
    priority_option, queue_option, split_names, timeout_option,
)

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON instead of a table.")


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in cells)


# -- cancel -------------------------------------------------------------------------------
@click.command()
@click.argument("job_ids", nargs=-1, metavar="[ID]...")
@option("queue", default=None, metavar="NAME",
        help="Cancel every waiting and running job of this queue instead.")
@connection_options
def cancel(conn: ConnectionSettings, job_ids: tuple[str, ...], queue: str | None) -> None:
    """Cancel jobs: a waiting one never runs, a running one is asked to stop.

    Prints each id cancelled; ids that are unknown or already ended are
    reported on stderr. Exit 1 if none was cancelled.

    \b
    Examples:
      controller cancel 12
      controller cancel 12 13 14
      controller cancel --queue gpu
    """
    if bool(job_ids) == (queue is not None):
        raise click.UsageError("give job ids or --queue NAME (one of the two)")
    mlq = open_mlq(conn)
    if queue is not None:
        cancelled = mlq.cancel_many(queue=queue)
        if not cancelled:
            raise CliError(f"no waiting or running job in queue {queue!r}", 1)
        click.echo("\n".join(cancelled))
        return
    # one by one, not cancel_many: that one leaves unknown and ended ids out silently
    if not sum(cancel_one(mlq, job_id) for job_id in job_ids):
        raise CliError("nothing cancelled", 1)


def cancel_one(mlq: MLQ, job_id: str) -> bool:
    """Cancel one job and say what became of it; whether it was cancelled."""
    try:
        done = mlq.cancel(job_id)
        status = mlq.get_job(job_id, fields=["status"])["status"]
    except JobNotFound as exc:
        click.echo(f"{exc}: not cancelled", err=True)
        return False
    if not done:
        click.echo(f"job {job_id} had already ended ({status}): not cancelled", err=True)
        return False
    click.echo(str(job_id))
    if status == STARTED:  # the worker has yet to see the request
        click.echo(f"job {job_id} is running: asked to stop", err=True)
    return True


# -- cron ---------------------------------------------------------------------------------
@click.group()
def cron() -> None:
    """Periodic jobs: post a message at every time a cron expression names.

    Any running worker fires them; each time fires once.

    \b
    Examples:
      controller cron add nightly '0 2 * * *' '{"report": "daily"}' --timezone Europe/Berlin
      controller cron list
      controller cron remove nightly
    """


@cron.command("add")
@click.argument("name")
@click.argument("cron_expression", metavar="CRON")
@click.argument("msg")
@queue_option
@functions_option
@option("timezone", default="UTC", show_default=True, metavar="ZONE",
        help="IANA time zone the expression is read in (e.g. Europe/Berlin).")
@priority_option
@timeout_option
@connection_options
def cron_add(conn: ConnectionSettings, name: str, cron_expression: str, msg: str, queue: str,
             functions: tuple[str, ...], timezone: str, priority: int,
             timeout: float | None) -> None:
    """Post MSG at every time of CRON; a schedule of the same NAME is replaced.

    CRON has five fields (minute hour day month weekday), or six with seconds
    first. MSG is parsed as JSON when it is valid JSON, else sent as a string;
    text that opens like a JSON object or array but does not parse is refused.

    \b
    Examples:
      controller cron add nightly '0 2 * * *' '{"report": "daily"}' --queue cpu
      controller cron add ping '*/5 * * * *' ping --timezone Europe/Berlin
      controller cron add tick '*/10 * * * * *' tick --functions heartbeat
    """
    check_cron(cron_expression, timezone)
    entry = open_mlq(conn).schedule(name, cron_expression, post_message(msg, False), queue=queue,
                                    functions=split_names(functions), timezone=timezone,
                                    priority=priority, timeout=timeout)
    click.echo(f"{entry['name']}: next run {iso_time(entry['next_run'], entry['timezone'])}")


def check_cron(expression: str, timezone: str) -> None:
    """A usage error (exit 2) for a time zone or expression MLQ would refuse; checked
    before connecting, as these are the user's to fix whatever Redis says."""
    try:
        zone(timezone)
    except InvalidMessage as exc:
        raise click.BadParameter(str(exc), param_hint="--timezone") from None
    try:
        next_slot(expression, timezone, time.time())
    except InvalidMessage as exc:
        raise click.BadParameter(str(exc), param_hint="CRON") from None


@cron.command("list")
@json_option
@connection_options
def cron_list(conn: ConnectionSettings, as_json: bool) -> None:
    """List the schedules: name, cron, time zone, queue, next run, last job.

    \b
    Examples:
      controller cron list
      controller cron list --json
    """
    entries = open_mlq(conn).schedules()
    if as_json:
        click.echo(to_json(entries))
        return
    if not entries:
        click.echo("no schedules", err=True)
        return
    click.echo(table(("NAME", "CRON", "TIMEZONE", "QUEUE", "NEXT RUN", "LAST JOB"), [
        (e["name"], e["cron"], e["timezone"], e["queue"],
         iso_time(e["next_run"], e["timezone"]), e["last_job"] or "-") for e in entries]))


@cron.command("remove")
@click.argument("name")
@connection_options
def cron_remove(conn: ConnectionSettings, name: str) -> None:
    """Stop a schedule (jobs it already posted stay). Exit 1 if there was none.

    \b
    Examples:
      controller cron remove nightly
    """
    if not open_mlq(conn).unschedule(name):
        raise CliError(f"no schedule {name!r}", 1)
    click.echo(f"removed {name}")


def iso_time(epoch: float | None, timezone: str) -> str:
    """`epoch` as ISO 8601 in the schedule's own zone (UTC where this machine lacks it)."""
    if epoch is None:
        return "-"
    try:
        where = zone(timezone)
    except InvalidMessage:
        where = dt_timezone.utc
    return datetime.fromtimestamp(epoch, where).isoformat()


# -- queue --------------------------------------------------------------------------------
@click.group("queue")
def queue_group() -> None:
    """Pause and resume queues: workers take nothing from a paused queue.

    Jobs may still be posted to a paused queue; they wait until it is resumed.

    \b
    Examples:
      controller queue pause gpu
      controller queue list
      controller queue resume gpu
    """


@queue_group.command("pause")
@click.argument("name")
@connection_options
def queue_pause(conn: ConnectionSettings, name: str) -> None:
    """Stop workers taking jobs from queue NAME (running jobs finish).

    \b
    Examples:
      controller queue pause gpu
    """
    open_mlq(conn).pause(name)
    click.echo(f"paused {name}")


@queue_group.command("resume")
@click.argument("name")
@connection_options
def queue_resume(conn: ConnectionSettings, name: str) -> None:
    """Let workers take jobs from queue NAME again.

    \b
    Examples:
      controller queue resume gpu
    """
    mlq = open_mlq(conn)
    was_paused = name in mlq.paused()
    mlq.resume(name)
    click.echo(f"resumed {name}")
    if not was_paused:
        click.echo(f"queue {name} was not paused", err=True)


@queue_group.command("list")
@json_option
@connection_options
def queue_list(conn: ConnectionSettings, as_json: bool) -> None:
    """List the queues: name, jobs waiting, paused or not.

    \b
    Examples:
      controller queue list
      controller queue list --json
    """
    mlq = open_mlq(conn)
    paused = set(mlq.paused())
    # a paused queue nothing was ever posted to is still worth showing
    rows = [{"name": name, "waiting": mlq.job_count(name), "paused": name in paused}
            for name in sorted(set(mlq.queue_names()) | paused)]
    if as_json:
        click.echo(to_json(rows))
        return
    click.echo(table(("NAME", "WAITING", "PAUSED"), [
        (row["name"], row["waiting"], "yes" if row["paused"] else "no") for row in rows]))
