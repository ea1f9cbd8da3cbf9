"""The results as a terminal table and as docs/benchmarks.md."""

from __future__ import annotations

from typing import Any

from .summary import COLUMNS, Column, Stat, goals, ratio
from .systems import REFERENCE, System


def number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def cell(value: Stat | None, column: Column, ranges: bool = True) -> str:
    if value is None:
        return "—"
    text = number(value.median, column.digits)
    if ranges and value.n > 1:
        text += f" ({number(value.low, column.digits)}–{number(value.high, column.digits)})"
    return text


def ratio_cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _rows(systems: list[System], stats: dict[str, dict[str, Stat | None]],
          ranges: bool) -> list[list[str]]:
    return [[s.label] + [cell(stats[s.key][c.key], c, ranges) for c in COLUMNS] for s in systems]


def _ratio_rows(systems: list[System], stats: dict[str, dict[str, Stat | None]]) -> list[list[str]]:
    mlq = stats[REFERENCE]
    return [[f"MLQ / {s.label}"] + [ratio_cell(ratio(mlq[c.key], stats[s.key][c.key]))
                                    for c in COLUMNS]
            for s in systems if s.key != REFERENCE]


def text_table(systems: list[System], stats: dict[str, dict[str, Stat | None]]) -> str:
    """Fixed-width tables for the terminal: medians (min–max), then the ratios."""
    header = ["system"] + [c.title for c in COLUMNS]
    blocks = []
    for rows in (_rows(systems, stats, True), _ratio_rows(systems, stats)):
        grid = [header] + rows
        widths = [max(len(r[i]) for r in grid) for i in range(len(header))]
        blocks.append("\n".join("  ".join(v.rjust(w) if i else v.ljust(w)
                                          for i, (v, w) in enumerate(zip(r, widths, strict=True)))
                                for r in grid))
    return "\n\n".join(blocks)


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def goals_markdown(stats: dict[str, dict[str, Stat | None]], labels: dict[str, str]) -> str:
    verdicts = {True: "met", False: "**not met**", None: "—"}
    rows = []
    for row in goals(stats):
        measured = row["ratio"]
        if measured is None:
            shown = "—"
        elif row["peer"] is None:
            shown = f"{measured:.1f}"
        else:
            shown = f"{measured:.2f}× ({labels[row['peer']]})"
        named = "—" if row["named"] is None else \
            f"{row['named_ratio']:.2f}× ({labels[row['named']]}): {verdicts[row['named_met']]}"
        rows.append([row["goal"], shown, verdicts[row["met"]], named])
    return _markdown(["goal", "MLQ against the best peer", "",
                      "against the peer the goal names"], rows)


def http_markdown(http: dict[str, Any]) -> str:
    if not http or "cases" not in http:
        return f"Not run: {http.get('error', 'skipped')}" if http else "Not run (--no-http)."
    rows = []
    for case in http["cases"]:
        mlq, bare = case["mlq"], case["bare"]
        measured = mlq["median"] / bare["median"] if bare["median"] else None
        extra = [_spread(case[side]) if side in case else "—"
                 for side in ("bare + LPUSH", "bare, stock")]
        lpush = case.get("bare + LPUSH")
        floor = lpush["median"] / bare["median"] if lpush and bare["median"] else None
        rows.append([case["title"], _spread(mlq), _spread(bare), *extra, ratio_cell(measured),
                     ratio_cell(floor),
                     f"≥ {case['goal']:.1f}×",
                     "met" if measured is not None and measured >= case["goal"] else "**not met**"])
    return _markdown(["request", "MLQ req/s", "bare req/s", "bare + LPUSH req/s",
                      "bare, stock gevent req/s", "MLQ / bare", "bare + LPUSH / bare",
                      "goal", ""], rows)


def floor_markdown(floors: dict[str, dict[str, float]]) -> str:
    if not floors:
        return "Not measured."
    rows = [[name, _spread(values)] for name, values in floors.items()]
    return (_markdown(["one call at a time, from the harness", "calls/s"], rows)
            + "\n\nNo enqueue that waits for its reply can beat these: an `LPUSH` is all a "
            "Huey enqueue sends, and an MLQ post is one `EVALSHA` whose script does the "
            "work.")


def _spread(values: dict[str, float]) -> str:
    text = number(values["median"], 0)
    if values["n"] > 1:
        text += f" ({number(values['low'], 0)}–{number(values['high'], 0)})"
    return text


#: docs/benchmarks.md also carries sections other benchmarks write (benchmarks/cluster.py),
#: each between these markers; a new report keeps them as they were.
KEPT_START, KEPT_END = "<!-- kept: ", "<!-- end kept -->"


def kept_sections(old: str) -> str:
    """The marked sections of an earlier report, to append to a new one."""
    sections, rest = [], old
    while KEPT_START in rest and KEPT_END in rest:
        start = rest.index(KEPT_START)
        end = rest.index(KEPT_END, start) + len(KEPT_END)
        sections.append(rest[start:end])
        rest = rest[end:]
    return "".join(f"\n{section}\n" for section in sections)


def replace_section(report: str, name: str, body: str) -> str:
    """`report` with the kept section `name` set to `body` (appended if new)."""
    start_marker = f"{KEPT_START}{name} -->"
    section = f"{start_marker}\n{body.strip()}\n{KEPT_END}"
    if start_marker in report:
        start = report.index(start_marker)
        end = report.index(KEPT_END, start) + len(KEPT_END)
        return report[:start] + section + report[end:]
    return report.rstrip("\n") + f"\n\n{section}\n"


def markdown(systems: list[System], stats: dict[str, dict[str, Stat | None]],
             context: dict[str, Any]) -> str:
    """The whole of docs/benchmarks.md."""
    header = ["system"] + [c.title for c in COLUMNS]
    labels = {s.key: s.label for s in systems}
    machine, server = context["machine"], context["server"]
    versions = "\n".join(f"- {labels[k]}: " + ", ".join(f"{n} {v}" for n, v in sorted(vs.items()))
                         for k, vs in context["versions"].items())
    problems = "\n".join(f"- {p}" for p in context["problems"]) or "- none"
    return f"""# Benchmarks

Generated by `{context['command']}` on {context['date']} in {context['elapsed']}
({context['repeats']} repeat(s), systems interleaved; {context['jobs']} no-op jobs per
enqueue/drain scenario, {context['round_trips']} round trips for latency), MLQ at
{context['commit']} (copied when the run started).
Do not edit by hand: rerun the command.

![jobs/s per system and scenario](benchmarks.png)

## Results

Medians, with min–max over the repeats in brackets.

{_markdown(header, _rows(systems, stats, True))}

MLQ's median divided by each peer's (above 1 is MLQ ahead for jobs/s, below 1 is
MLQ ahead for latency, commands and CPU):

{_markdown(["ratio"] + [c.title for c in COLUMNS], _ratio_rows(systems, stats))}

### Speed goals

{goals_markdown(stats, labels)}

### One round trip per call, for scale

{floor_markdown(context.get('floors', {}))}

### HTTP (`POST /jobs`, and `GET /jobs/<id>/result` of a 10 MiB result)

{http_markdown(context['http'])}

{context['http'].get('note', '') if context['http'] else ''}

## What is measured

- One private {server['server']} (Redis protocol {server['redis_version']}) started by
  `mlq.embedded.EmbeddedServer` on a free loopback port, shared by every system;
  AOF {server['appendonly']}. Every scenario starts from `FLUSHALL`.
- Each system runs in its own virtual environment (`benchmarks/.venvs/<system>`); MLQ
  runs from this checkout. Each system's configuration, the fastest its documentation
  offers, is stated at the top of `benchmarks/peers/<system>_bench.py`.
- **enqueue**: jobs/s of one enqueue call per job, no worker running.
  **bulk**: the system's bulk API (MLQ `post_many`, RQ `enqueue_many`); — where it has none.
- **drain**: the queue is filled first, then 1 or 2 worker processes start; jobs/s
  over the steady part, from the moment 5% of the jobs are done and every worker
  process has run one, until the last is done (start-up, 0.2–1.5 s, differs widely
  between systems and would swamp a few thousand no-op jobs; the raw JSON also has
  the rate from worker start). A job is a no-op that appends one byte to a file, which
  is how the driver counts finished jobs without touching Redis.
- **latency**: {context['round_trips']} sequential round trips after 20 warm-up ones,
  enqueue until the client holds the result, waited for each system's own way, one
  idle worker.
- **Redis cmds/job**: `INFO commandstats` calls over the 1-worker drain window,
  divided by the jobs; commands run inside Lua scripts count, as does each EVALSHA.
- **Redis cmds per post+wait**: the same count over the timed latency round trips,
  divided by them: the client's post and wait, the worker's take and finish, and
  whatever the idle worker sends meanwhile.
- **worker CPU µs/job**: user+system CPU of all worker processes (supervisors and
  children included) over the same window, from `/proc`; **Redis CPU** likewise from
  `INFO cpu`.

## Machine

- {machine['nproc']} CPUs (`nproc`), {machine['cpu']}, {machine['memory']}, {machine['os']}
- Python {machine['python']}; server {server['server']}
- Other load on the machine while it ran: {context['foreign_load']}

Versions:

{versions}

## Problems during this run

{problems}
"""
