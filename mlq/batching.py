"""Batching listeners (`mlq.listener(batch_size=...)`): a worker gathers up to
batch_size jobs, waiting at most batch_wait seconds for a short batch to fill,
and the listener gets all their messages in one call (one forward pass of a
model), returning one outcome per message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .errors import ListenerError
from .listeners import Listener
from .lifecycle import retried
from .record import Outcome, outcome_of, outcome_of_error

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("mlq.worker")

Record = dict[str, Any]


class Batches:
    """The batching part of one worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def settings(self) -> tuple[int, float]:
        """(largest batch_size, its batch_wait) among the worker's listeners."""
        worker = self.worker
        size, wait = 1, 0.0
        for function in [*worker.local.values(), *worker.mlq.registry.functions().values()]:
            batch = getattr(function, "__mlq_batch__", None)
            if batch and batch[0] > size:
                size, wait = batch
        return size, wait

    def fill(self, missing: int, wait: float) -> list[Record]:
        """Keep taking for up to `wait` seconds (of the worker's clock) while a batch
        is short."""
        worker = self.worker
        deadline = worker.clock() + wait
        records: list[Record] = []
        while missing > 0:
            remaining = deadline - worker.clock()
            if remaining <= 0:
                break
            more = worker.take(max(remaining, 0.001), missing, holding=True)
            if more:
                records += more
                missing -= len(more)
        return records

    def run(self, records: list[Record]) -> list[Record]:
        """Run the records whose only listener batches; return the others."""
        groups: dict[str, tuple[Listener, list[Record]]] = {}
        singles = []
        for record in records:
            try:
                chosen = self.worker.mlq.registry.resolve(record["functions"], self.worker.local)
            except ListenerError:
                chosen = []
            if len(chosen) == 1 and getattr(chosen[0][1], "__mlq_batch__", None):
                name, function = chosen[0]
                groups.setdefault(name, (function, []))[1].append(record)
            else:
                singles.append(record)
        for name, (function, batch) in groups.items():
            self._run_batch(name, function, batch)
        return singles

    def _run_batch(self, name: str, function: Listener, records: list[Record]) -> None:
        worker = self.worker
        started = worker.clock()
        first = records[0]
        worker.current = (first["id"], first["attempt"], started, first["timeout"])
        for record in records:
            worker.hooks.job_started(worker.worker_id, record["id"], record["attempt"],
                                     record["timeout"])
        log.info("batch of %d jobs (%s) started on %s", len(records),
                 ",".join(r["id"] for r in records), worker.worker_id,
                 extra={"job_ids": [r["id"] for r in records], "worker_id": worker.worker_id,
                        "event": "started", "duration": 0.0})
        try:
            results = self._execute(name, function, records)
            for index, (record, (outcome, fields, short)) in enumerate(zip(records, results)):
                worker.finish(record, outcome, fields, short, started,
                              last=index == len(records) - 1)
        finally:
            worker.current = None
            for record in records:
                worker.hooks.job_ended(worker.worker_id, record["id"])

    def _execute(self, name: str, function: Listener, records: list[Record]) -> list[Outcome]:
        worker = self.worker
        context = {
            "jobs": [worker.context(record) for record in records],
            "full_messages": records,
            "state": None,
        }
        try:
            context["state"] = worker.mlq.listener_states.state_for(name, function)
            outcomes = worker.call(function, [r["msg"] for r in records], context)
            if not isinstance(outcomes, (list, tuple)) or len(outcomes) != len(records):
                raise ListenerError(f"batch listener {name!r} must return a list of "
                                    f"{len(records)} outcomes, one per message")
        except Exception as exc:
            everyone = outcome_of_error(exc)
            return [retried(r, exc, worker.clock()) or everyone for r in records]
        limit = worker.mlq.max_result_size
        return [(retried(r, o, worker.clock()) or outcome_of_error(o))
                if isinstance(o, BaseException) else outcome_of(o, limit)
                for r, o in zip(records, outcomes)]
