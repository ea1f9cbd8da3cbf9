#!/usr/bin/env python
"""Batching listeners against one job per call, for a model with a fixed cost per call.

    python benchmarks/batching.py                       # 2,000 jobs each way, best of 3
    python benchmarks/batching.py --jobs 500 --overhead_ms 5 --batch_size 64

The model costs a fixed overhead per call (a sleep, standing for what a real
model pays per forward pass whatever its batch: kernel launches, host-device
copies, framework dispatch) plus a small cost per item: a two-layer perceptron,
as numpy matmuls on the stacked batch. The same jobs are posted up front, then
one worker thread drains them: first with a plain listener (one item per call),
then with the same model registered with batch_size (one call per batch). Each
run has its own namespace on a private embedded Redis; the time runs from the
worker's start until every job's outcome is recorded.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # mlq from this checkout

from mlq import MLQ
from mlq.embedded import EmbeddedServer

FEATURES, HIDDEN, CLASSES = 64, 256, 10

Model = Callable[[list[list[float]]], list[int]]


def make_model(overhead: float, calls: list[int]) -> Model:
    """The model: `overhead` seconds per call, then matmuls on the whole batch."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((FEATURES, HIDDEN))
    w2 = rng.standard_normal((HIDDEN, CLASSES))

    def predict(batch: list[list[float]]) -> list[int]:
        calls[0] += 1
        time.sleep(overhead)
        x = np.asarray(batch)  # float64: batched and single rows agree on argmax
        return (np.maximum(x @ w1, 0) @ w2).argmax(axis=1).tolist()

    return predict


def run(redis_url: str, namespace: str, msgs: list[list[float]], overhead: float,
        batch_size: int, batch_wait: float) -> tuple[float, int]:
    """Drain `msgs` with one worker thread; (seconds, model calls)."""
    calls = [0]
    predict = make_model(overhead, calls)

    def classify_one(msg: list[float], context: dict[str, Any]) -> int:
        return predict([msg])[0]

    def classify_batch(batch: list[list[float]], context: dict[str, Any]) -> list[int]:
        return predict(batch)

    q = MLQ(namespace, redis_url=redis_url, concurrency=1)
    ids = q.post_many(msgs)  # all waiting before the clock starts
    started = time.perf_counter()
    if batch_size > 1:
        q.create_listener(classify_batch, batch_size=batch_size, batch_wait=batch_wait)
    else:
        q.create_listener(classify_one)
    # polling the shared counters costs the worker nothing and errs by at most 10 ms
    while True:
        stats = q.stats()
        if stats["completed"] + stats["failed"] >= len(ids):
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    q.shutdown(timeout=10)
    if stats["failed"]:
        raise SystemExit(f"{stats['failed']} jobs failed: {q.dead_letters()[0]['error']}")
    expected = make_model(0.0, [0])(msgs)  # same weights: check every answer
    if [q.get_job(i)["result"] for i in ids] != expected:
        raise SystemExit("wrong results")
    q.clear_all()
    return elapsed, calls[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--batch_wait", type=float, default=0.05,
                        help="seconds a worker may wait to fill a batch")
    parser.add_argument("--overhead_ms", type=float, default=2.0,
                        help="the model's fixed cost per call")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each; the fastest counts (the machine's noise only slows)")
    args = parser.parse_args()
    # the Redis is private to this run, so the worker's no-secret warning is noise here
    logging.getLogger("mlq").setLevel(logging.ERROR)
    rng = np.random.default_rng(1)
    msgs = rng.standard_normal((args.jobs, FEATURES)).round(4).tolist()
    print(f"{args.jobs} jobs; model: {args.overhead_ms:g} ms per call + a "
          f"{FEATURES}x{HIDDEN}x{CLASSES} perceptron per item; one worker thread; "
          f"best of {args.repeats} runs")
    rates = {}
    with tempfile.TemporaryDirectory() as data_dir, \
            EmbeddedServer(port=None, data_dir=Path(data_dir)) as server:
        for size in (1, args.batch_size):
            elapsed, calls = min(run(server.url, f"batching_{size}", msgs,
                                     args.overhead_ms / 1000, size, args.batch_wait)
                                 for _ in range(args.repeats))
            rates[size] = args.jobs / elapsed
            print(f"batch_size {size:>3}: {elapsed:6.2f} s, {rates[size]:7.0f} jobs/s "
                  f"({calls} model calls)")
    print(f"throughput ratio (batch_size {args.batch_size} / 1): "
          f"{rates[args.batch_size] / rates[1]:.1f}x")


if __name__ == "__main__":
    main()
