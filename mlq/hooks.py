"""What a worker tells whoever supervises it: a process of its own reports its
jobs to the supervisor that may have to stop them (children.py)."""

from __future__ import annotations


class WorkerHooks:
    """What a worker tells its supervisor; the in-process default does nothing."""

    def job_started(self, worker_id: str, job_id: str, attempt: int, timeout: float | None) -> None:
        pass

    def job_ended(self, worker_id: str, job_id: str) -> None:
        pass

    def batch_fitted(self, worker_id: str, size: int) -> None:  # after a batch's OOM
        pass
