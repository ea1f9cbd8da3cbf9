"""Batching listeners (`mlq.listener(batch_size=...)`): a worker gathers up to
batch_size jobs, waiting at most batch_wait seconds for a short batch to fill,
and the listener gets all their messages in one call (one forward pass of a
model), returning one outcome per message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import defaults
from .errors import ListenerError
from .job import error_kind
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
        #: the largest batch that ran since one ran out of memory in this worker
        #: (None: none has); batch_size="auto" starts from it
        self.fitted: int | None = None

    def settings(self) -> tuple[int, float]:
        """(largest batch_size, its batch_wait) among the worker's listeners."""
        worker = self.worker
        size, wait = 1, 0.0
        for function in [*worker.local.values(), *worker.mlq.registry.functions().values()]:
            batch = getattr(function, "__mlq_batch__", None)
            if batch:
                wanted = batch[0] if batch[0] != "auto" else self.fitted or defaults.AUTO_BATCH
                if wanted > size:
                    size, wait = wanted, batch[1]
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

    def _fitting(self, name: str, function: Listener, records: list[Record],
                 context: dict[str, Any]) -> list[Any]:
        """The listener's outcomes for `records`. A batch that runs out of memory
        runs again as two halves, down to single jobs: only a job that does not fit
        alone fails (error_kind 'oom'), not the 31 that came with it."""
        part = {**context, "jobs": [c for c, r in zip(context["jobs"], context["full_messages"])
                                    if r in records], "full_messages": records}
        try:
            outcomes = self.worker.call(function, [r["msg"] for r in records], part)
        except Exception as exc:
            if error_kind(exc) != "oom" or len(records) == 1:
                raise
            half = len(records) // 2
            self._fitted(min(self.fitted or half, half))
            log.warning("batch of %d jobs ran out of memory on %s; running it as %d and %d",
                        len(records), self.worker.worker_id, half, len(records) - half)
            return [*self._fitting_or_failed(name, function, records[:half], context),
                    *self._fitting_or_failed(name, function, records[half:], context)]
        if not isinstance(outcomes, (list, tuple)) or len(outcomes) != len(records):
            raise ListenerError(f"batch listener {name!r} must return a list of "
                                f"{len(records)} outcomes, one per message")
        if self.fitted:
            self._fitted(max(self.fitted, len(records)))
        return list(outcomes)

    def _fitted(self, size: int) -> None:
        if size != self.fitted:
            self.fitted = size
            self.worker.hooks.batch_fitted(self.worker.worker_id, size)

    def _fitting_or_failed(self, name: str, function: Listener, records: list[Record],
                           context: dict[str, Any]) -> list[Any]:
        """_fitting, with an exception as the outcome of each job of a part that
        failed: one part's failure does not fail the other."""
        try:
            return self._fitting(name, function, records, context)
        except Exception as exc:
            return [exc] * len(records)

    def _execute(self, name: str, function: Listener, records: list[Record]) -> list[Outcome]:
        worker = self.worker
        context = {
            "jobs": [worker.context(record) for record in records],
            "full_messages": records,
            "state": None,
        }
        try:
            context["state"] = worker.mlq.listener_states.state_for(name, function)
            outcomes = self._fitting(name, function, records, context)
        except Exception as exc:
            everyone = outcome_of_error(exc)
            return [retried(r, exc, worker.clock()) or everyone for r in records]
        limit = worker.mlq.max_result_size
        return [(retried(r, o, worker.clock()) or outcome_of_error(o))
                if isinstance(o, BaseException) else outcome_of(o, limit)
                for r, o in zip(records, outcomes)]
