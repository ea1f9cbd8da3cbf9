"""`controller top`: the dashboard's overview as a live terminal view, for SSH users.

It reads Redis directly (no HTTP server needed) through the same
controller/overview.py the web page uses, so both show the same numbers.
rich is imported only when the command runs: the other commands start no slower.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from .display import short_ids
from .options import ConnectionSettings, connection_options, open_mlq, option
from .overview import (
    COLUMNS,
    Overview,
    OverviewSource,
    WorkerGroup,
    ago,
    rate_text,
    unserved_text,
    worker_groups,
)

if TYPE_CHECKING:
    from rich.console import RenderableType

#: Workers listed before "… and N more": a terminal is short.
MAX_WORKER_ROWS = 20
#: Columns of the workers table cut with "…" when the terminal is narrow, and their
#: shares of the width left over.
SHRINKING_COLUMNS = {"Host": 1, "Queues": 2}
#: Seconds `--once` waits between its two samples, so it can show a rate.
ONCE_SAMPLE_GAP = 1.0


@click.command()
@option("interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
        help="Seconds between refreshes.")
@option("once", is_flag=True, help="Print one frame to stdout and exit (for scripts).")
@connection_options
def top(conn: ConnectionSettings, interval: float, once: bool) -> None:
    """Watch the queue live: counts per queue, jobs per second, workers. Ctrl-C quits.

    \b
    Examples:
      controller top
      controller top --namespace my_app --interval 5
      controller top --once > snapshot.txt
    """
    from rich.console import Console
    from rich.live import Live

    mlq = open_mlq(conn)
    source = OverviewSource(mlq, cache_seconds=0.0)
    console = Console()
    if once:
        source.get()  # a first sample, so the frame can show a rate
        time.sleep(min(interval, ONCE_SAMPLE_GAP))
        console.print(frame(source.get(), worker_groups(mlq), conn.display))
        return
    with Live(frame(source.get(), worker_groups(mlq), conn.display), console=console,
              screen=True, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(frame(source.get(), worker_groups(mlq), conn.display), refresh=True)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how one leaves top: not an error


def frame(overview: Overview, groups: list[WorkerGroup], where: str) -> RenderableType:
    """One screen: a header line, the queues table and the workers table."""
    from rich.console import Group
    from rich.text import Text

    header = Text.assemble(
        ("MLQ top", "bold"), "  namespace ", (overview.namespace, "bold cyan"),
        f"  ·  {where}  ·  {time.strftime('%H:%M:%S', time.localtime(overview.taken_at))}  ·  ",
        (f"{overview.workers_alive} worker{'' if overview.workers_alive == 1 else 's'} alive",
         "green"))
    if overview.workers_dead:
        header.append(", ")
        header.append(f"{overview.workers_dead} dead", "bold red")
    # under the table, where the eye goes after the waiting column: jobs no one will take
    warnings = [Text(unserved_text(row), "bold yellow") for row in overview.queues if row.unserved]
    return Group(header, _queues_table(overview), *warnings, _workers_table(groups))


def _queues_table(overview: Overview) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Queues", title_justify="left", expand=True, show_footer=True)
    table.add_column("Queue", footer="all queues")
    styles = {"waiting": "yellow", "running": "blue", "completed": "green", "failed": "red",
              "dead": "bold red"}
    for column in COLUMNS:
        table.add_column(column.capitalize(), justify="right", style=styles[column],
                         footer=str(getattr(overview.total, column)))
    table.add_column("Jobs/s", justify="right", footer=rate_text(overview.total.rate))
    for row in overview.queues:
        # Text, not a str: a queue name with [brackets] is not rich markup
        table.add_row(Text(str(row.name)), *(str(getattr(row, c)) for c in COLUMNS),
                      rate_text(row.rate))
    return table


def _workers_table(groups: list[WorkerGroup]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Workers", title_justify="left", expand=True)
    # ids and numbers are never wrapped: half an id names no worker. The host
    # gives way first (cut with "…"), as it is also the first part of the id.
    # Queues give way too, less than the host: the unserved warnings above say
    # what matters most of them.
    for name, justify in (("Worker", "left"), ("Host", "left"), ("PID", "right"),
                          ("Parent", "right"), ("Queues", "left"), ("GPUs", "left"),
                          ("Job", "right"), ("Heartbeat", "right"), ("State", "left")):
        share = SHRINKING_COLUMNS.get(name)
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         no_wrap=True, overflow="fold" if share is None else "ellipsis",
                         ratio=share)
    workers = [(group, w) for group in groups for w in group.workers]
    # shortened among the rows shown, as git shortens hashes: unique, and short
    shown = short_ids(str(w["id"]) for _, w in workers[:MAX_WORKER_ROWS])
    for group, w in workers[:MAX_WORKER_ROWS]:
        table.add_row(Text(shown[str(w["id"])]), Text(str(w["host"])), str(w["pid"]),
                      str(group.pid), Text(",".join(w["queues"]) or "—"),
                      Text(",".join(map(str, w["gpus"])) or "—"), str(w.get("job") or "idle"),
                      ago(w["age"]) if w["alive"] else "expired",
                      Text("alive", "green") if w["alive"] else Text("DEAD", "bold red"))
    if len(workers) > MAX_WORKER_ROWS:
        table.add_row(f"… and {len(workers) - MAX_WORKER_ROWS} more", *[""] * 8)
    if not workers:
        table.add_row("no workers have reported", *[""] * 8)
    return table
