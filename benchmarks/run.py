#!/usr/bin/env python
"""MLQ against the other Python job queues on one private Redis, side by side.

    python benchmarks/run.py                      # full run (< 15 min), writes docs/benchmarks.*
    python benchmarks/run.py --quick              # ~1-2 min smoke run, report in a temp folder
    python benchmarks/run.py --only mlq,rq --repeats 5 --jobs 3000

Each peer is installed in benchmarks/.venvs/<peer> on first use. See
benchmarks/README.md for what is measured, and --help for the options.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

# Neither imports mlq: the library comes from a snapshot of the checkout taken
# when the run starts, so edits made during a run never mix into its numbers.
from harness import checkout, procs  # noqa: E402


def _interrupt(*_: Any) -> NoReturn:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    procs.mark_this_process()
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="mlq-bench-"))
    keep = "--keep" in (argv if argv is not None else sys.argv[1:])
    try:
        snapshot = checkout.snapshot(workdir)
        sys.path.insert(1, str(snapshot))
        from harness import cli, venvs
        venvs.MLQ_PATH = snapshot
        return cli.main(argv, workdir)
    except KeyboardInterrupt:
        print("interrupted: stopping everything this run started", flush=True)
        return 130
    finally:
        procs.stop_all()
        if keep:
            print(f"logs kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
