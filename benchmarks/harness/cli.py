"""The body of benchmarks/run.py: options, the passes, the report.

Imported only after run.py has put the run's snapshot of the checkout on sys.path,
so everything here, and every MLQ process it starts, runs the same MLQ code.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import checkout, drivers, floor, http_bench, machine, quiet, report, server, summary, venvs
from .systems import SYSTEMS, System, select

BENCH_DIR = Path(__file__).resolve().parent.parent
SCENARIOS = ("enqueue", "bulk", "drain1", "drain2", "latency")
CHART_SCENARIOS = ("enqueue", "bulk", "drain1", "drain2")
#: Seconds the whole run may spend waiting for other people's load to pass (the
#: 15-minute budget of a full run includes them).
QUIET_BUDGET = 90.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="MLQ against the other Python job queues on one private Redis, side by side.")
    parser.add_argument("--repeats", type=int, default=3, help="passes over every system (default 3)")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per enqueue/drain scenario")
    parser.add_argument("--round-trips", type=int, default=300, help="timed latency round trips")
    parser.add_argument("--only", help=f"comma-separated systems (MLQ is always in): "
                                       f"{','.join(s.key for s in SYSTEMS)}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repeat, 300 jobs, 100 round trips, short HTTP")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP benchmark")
    parser.add_argument("--http-seconds", type=int, default=4, help="per HTTP measurement")
    parser.add_argument("--docs", type=Path, help="where benchmarks.md/.png go (default: docs/, "
                                                  "or a temp folder with --quick)")
    parser.add_argument("--json", type=Path, help="also save the raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")  # run.py
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.jobs, args.round_trips, args.http_seconds = 1, 300, 100, 2
    if args.repeats < 1 or args.jobs < 100 or args.round_trips < 10:
        parser.error("need --repeats >= 1, --jobs >= 100, --round-trips >= 10")
    return args


def main(argv: list[str] | None, workdir: Path) -> int:
    """Parse the options and run; `workdir` (logs, the server's files) is run.py's."""
    started = time.monotonic()
    return run(parse_args(argv), workdir, started)


def say(line: str) -> None:
    print(line, flush=True)


def run(args: argparse.Namespace, workdir: Path, started: float) -> int:
    systems = select(args.only)
    failures = venvs.ensure_all(systems, say)
    runnable = [s for s in systems if s.key not in failures]
    settings = drivers.Settings(
        jobs=args.jobs, round_trips=args.round_trips, scenarios=SCENARIOS,
        drain_timeout=max(30.0, args.jobs / 40), startup_timeout=60.0)
    results: dict[str, list[dict[str, Any]]] = {s.key: [] for s in runnable}
    loads: list[float] = []
    floors: list[dict[str, float]] = []
    quiet_budget = QUIET_BUDGET

    def wait_for_quiet() -> None:
        nonlocal quiet_budget
        waited = time.monotonic()
        loads.append(quiet.wait_for_quiet(limit=min(5.0, quiet_budget)))
        quiet_budget = max(quiet_budget - (time.monotonic() - waited), 0.0)

    with server.private_redis(workdir / "redis") as redis_server:
        url = redis_server.url
        server_info = server.describe(url)
        say(f"{server_info['server']} at {url}; {len(runnable)} systems x {args.repeats} repeats")
        for repeat in range(args.repeats):
            wait_for_quiet()
            floors.append(floor.measure(url))
            shift = repeat % len(runnable)  # rotate, so no system always runs first
            for system in runnable[shift:] + runnable[:shift]:
                wait_for_quiet()
                pass_started = time.monotonic()
                result = drivers.run(system, url, settings, workdir, f"r{repeat}")
                results[system.key].append(result)
                say(f"{repeat + 1}/{args.repeats} {_progress(system, result)} "
                    f"({time.monotonic() - pass_started:.1f} s)")
        http: dict[str, Any] = {} if args.no_http else _http(url, args, workdir)
    stats = summary.table(runnable, results)
    say("\n" + report.text_table(runnable, stats))
    context = _context(args, runnable, results, failures, http, server_info, loads, started)
    context["floors"] = floor.summarize(floors)
    folder = _write_docs(args, runnable, stats, context)
    if not args.quick:
        # what the lifecycle costs a drain (100,000 scheduled jobs not yet due against
        # none, measured with the same drain driver) and a burst of jobs due together:
        # a script of its own, which writes its own section of the same page
        subprocess.run([sys.executable, str(BENCH_DIR / "lifecycle.py"), "--docs", str(folder),
                        "--repeats", str(args.repeats)], check=False)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "http": http,
                                         "context": context}, indent=1, default=str))
    say(f"done in {context['elapsed']}")
    return 0


def _http(url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    say("HTTP: MLQ's server against a bare gevent+Flask app")
    try:
        return http_bench.run(url, args.repeats, args.http_seconds, workdir, say)
    except Exception as exc:  # noqa: BLE001 - the queue results still deserve a report
        say(f"  HTTP benchmark failed: {exc}")
        return {"error": str(exc)}


def _progress(system: System, result: dict[str, Any]) -> str:
    if "error" in result:
        return f"{system.key:9} FAILED: {result['error'].strip().splitlines()[-1]}"
    parts = []
    for key in ("enqueue", "bulk", "drain1", "drain2", "p50"):
        column = summary.BY_KEY[key]
        value = result.get(column.scenario, {}).get(column.field)
        shown = "err" if "error" in result.get(column.scenario, {}) else (
            "—" if value is None else report.number(value, column.digits))
        parts.append(f"{key} {shown}")
    return f"{system.key:9} " + "  ".join(parts)


def _context(args: argparse.Namespace, systems: list[System], results: dict[str, Any],
             failures: dict[str, str], http: dict[str, Any], server_info: dict[str, str],
             loads: list[float], started: float) -> dict[str, Any]:
    elapsed = time.monotonic() - started
    versions = {}
    for system in systems:
        found = next((r["versions"] for r in results[system.key] if "versions" in r), None)
        if found:
            versions[system.key] = found
    problems = [f"{key}: could not be installed: {error.strip().splitlines()[-1]}"
                for key, error in failures.items()]
    problems += summary.errors(results)
    if http.get("error"):
        problems.append(f"HTTP: {http['error']}")
    loads_sorted = sorted(loads) or [0.0]
    return {
        "command": "python benchmarks/run.py" + "".join(" " + shlex.quote(a) for a in sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "elapsed": f"{elapsed / 60:.1f} min",
        "repeats": args.repeats, "jobs": args.jobs, "round_trips": args.round_trips,
        "machine": machine.describe(), "server": server_info, "versions": versions,
        "commit": checkout.describe(),
        "problems": problems, "http": http,
        "foreign_load": (f"CPUs {loads_sorted[len(loads_sorted) // 2]:.0%} busy (median; max "
                         f"{loads_sorted[-1]:.0%}) just before each system's pass; other "
                         "sessions share this machine, so absolute numbers carry that noise"),
    }


def _write_docs(args: argparse.Namespace, systems: list[System],
                stats: dict[str, Any], context: dict[str, Any]) -> Path:
    """Write the report (keeping the sections other scripts own); the folder."""
    folder = args.docs or (Path(tempfile.mkdtemp(prefix="mlq-bench-quick-")) if args.quick
                           else BENCH_DIR.parent / "docs")
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "benchmarks.md"
    kept = report.kept_sections(page.read_text()) if page.exists() else ""
    page.write_text(report.markdown(systems, stats, context) + kept)
    chart: dict[str, Any] = {"systems": [s.label for s in systems],
             "scenarios": [summary.BY_KEY[k].title.replace(" jobs/s", "") for k in CHART_SCENARIOS],
             "title": f"jobs/s, log scale; {context['machine']['nproc']} CPUs, "
                      f"{context['server']['server']}, {context['date']}"}
    for part in ("median", "low", "high"):
        chart[part] = [[getattr(stats[s.key][k], part, None) if stats[s.key][k] else None
                        for k in CHART_SCENARIOS] for s in systems]
    data = folder / "benchmarks-chart.json"
    data.write_text(json.dumps(chart))
    try:
        python = venvs.ensure("plot", venvs.PLOT_REQUIREMENTS)
        subprocess.run([str(python), str(BENCH_DIR / "chart.py"), str(data),
                        str(folder / "benchmarks.png")], check=True, timeout=120,
                       capture_output=True, text=True)
    except (subprocess.SubprocessError, RuntimeError, OSError) as exc:
        say(f"chart not drawn: {exc}")
    finally:
        data.unlink()
    say(f"report: {folder / 'benchmarks.md'}")
    return folder


