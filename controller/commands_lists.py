"""The commands that read or clear what a namespace holds as a whole: jobs,
workers, functions, the dead-letter queue (deadletter) and clear_all.

Thin, as controller/commands_jobs.py: one MLQ call, then a table that fits 80
columns (controller/display.py), or JSON with --json.
"""

from __future__ import annotations

import time
from typing import Any

import click

from mlq.job import STARTED, STATUSES
from mlq.listing import MAX_PAGE

from .commands_jobs import to_json
from .commands_lifecycle import json_option
from .display import job_matches, short_ids, table
from .options import (
    CliError, ConnectionSettings, connection_options, open_mlq, option, yes_option,
)
from .overview import ago, describe_worker, human_size, when


# -- jobs -------------------------------------------------------------------------------
@click.command()
@option("status", type=click.Choice(STATUSES), default=None, help="Only jobs in this status.")
@option("queue", default=None, help="Only jobs of this queue.")
@option("owner", default=None,
        help="Only jobs of this owner, among the newest --limit jobs listed (see above).")
@option("function", default=None, metavar="NAME",
        help="Only jobs posted with --functions naming NAME, among the newest --limit "
             "jobs listed (see above).")
@option("limit", type=click.IntRange(1, MAX_PAGE), default=20, show_default=True,
        help="How many of the newest jobs to list.")
@json_option
@connection_options
def jobs(conn: ConnectionSettings, status: str | None, queue: str | None, owner: str | None,
         function: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first: id, status, queue, owner, functions, age and outcome.

    --status and --queue are answered by Redis' indexes, over every job.
    Redis keeps no index by owner or function, so --owner and --function
    filter the newest LIMIT jobs that --status and --queue select, here:
    they may show fewer than LIMIT although older jobs match (raise --limit,
    at most 500, to look further back). --json prints the records (without
    their results; `controller status ID` has those).

    \b
    Examples:
      controller jobs
      controller jobs --status failed --queue gpu --limit 50
      controller jobs --owner alice --function translate --json
    """
    total, records = open_mlq(conn).list_jobs(status, queue, 0, limit)
    picked = [r for r in records if job_matches(r, owner, function)]
    if as_json:
        click.echo(to_json(picked))
        return
    if picked:
        now = time.time()
        click.echo(table(("ID", "STATUS", "QUEUE", "OWNER", "FUNCTIONS", "AGE", "OUTCOME"),
                         [_job_row(record, now) for record in picked], right=(0,)))
    filtered = "" if owner is None and function is None else f" ({len(picked)} matched)"
    click.echo(f"newest {len(records)} of {total} jobs{filtered}", err=True)


def _job_row(record: dict[str, Any], now: float) -> list[str]:
    posted = record.get("timestamp")
    age = ago(now - posted) if isinstance(posted, (int, float)) else "—"
    progress, outcome = record.get("progress"), record.get("short_result")
    if outcome is None:  # a binary result has no short text; a running job has progress
        outcome = f"progress {progress}" if record["status"] == STARTED else ""
    return [record["id"], record["status"], record.get("queue") or "default",
            record.get("owner") or "—", ",".join(record.get("functions") or ()) or "(all)",
            age, str(outcome)]


# -- workers ----------------------------------------------------------------------------
@click.command()
@json_option
@connection_options
def workers(conn: ConnectionSettings, as_json: bool) -> None:
    """List the workers that sent heartbeats: alive ones, and dead ones that still hold
    jobs until the reaper took them back.

    Ids are shortened to the shortest suffix or prefix no other worker shares
    (as git shortens hashes); --json prints them whole, with every field of
    the heartbeat.

    \b
    Examples:
      controller workers
      controller workers --json
    """
    now = time.time()
    found = [describe_worker(info, now) for info in open_mlq(conn).workers()]
    if as_json:
        click.echo(to_json(found))
        return
    if not found:
        click.echo("no workers have reported", err=True)
        return
    shown = short_ids(str(w["id"]) for w in found)
    rows = [[shown[str(w["id"])], w["host"], w["pid"], ",".join(w.get("queues") or []) or "—",
             ",".join(map(str, w["gpus"])) or "—", w.get("job") or "idle",
             ago(w["age"]) if w["alive"] else "expired", "alive" if w["alive"] else "DEAD"]
            for w in found]
    click.echo(table(("WORKER", "HOST", "PID", "QUEUES", "GPUS", "JOB", "BEAT", "STATE"), rows,
                     right=(2, 5, 6)))


# -- functions --------------------------------------------------------------------------
@click.command()
@json_option
@connection_options
def functions(conn: ConnectionSettings, as_json: bool) -> None:
    """List the listener functions: those registered for the namespace (which every
    worker runs), and those live workers report in their heartbeats (loaded with
    `consumer --import`, for those workers alone).

    \b
    Examples:
      controller functions
      controller functions --json
    """
    mlq = open_mlq(conn)
    entries = {info["name"]: {"name": info["name"], "registered": True, "size": info["size"],
                              "registered_at": info["registered"], "workers": []}
               for info in mlq.registry.info()}
    for worker in mlq.workers():
        for name in (worker.get("functions") or []) if worker["alive"] else []:
            entry = entries.setdefault(name, {"name": name, "registered": False, "size": None,
                                              "registered_at": None, "workers": []})
            entry["workers"].append(worker["id"])
    if as_json:
        click.echo(to_json(list(entries.values())))
        return
    if not entries:
        click.echo("no functions registered or reported", err=True)
        return
    rows = [[e["name"], "yes" if e["registered"] else "no", human_size(e["size"]),
             when(e["registered_at"]), len(e["workers"])] for e in entries.values()]
    click.echo(table(("NAME", "REGISTERED", "SIZE", "SINCE", "WORKERS"), rows,
                     right=(2, 4)))


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
