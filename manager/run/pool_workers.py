"""Which task a pool worker runs: a busy pool worker's record names its task and attempt, and
counts only when that attempt's claim names the worker too. Every view (status, logs, dispatch,
recovery) reads pool workers through here, so they see the same records as for a task's own
worker; the pool's machinery itself is in :mod:`.pool`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from orchestration_protocol import Claim, InvalidFile, Layout, read_model_if_exists, read_snapshot
from orchestration_protocol.pool import PoolWorkerState, read_pool_worker

from ..backends import Backend, WorkerRecord


def claim_holder(layout: Layout, task_id: str, attempt: int) -> str | None:
    """Who holds the claim of that attempt (None when there is none, or it is unreadable)."""
    try:
        claim = read_model_if_exists(layout.claim_file(task_id, attempt), Claim, task_id)
    except (InvalidFile, ValueError):
        return None
    return claim.worker_id if claim is not None else None


def with_pool_tasks(layout: Layout, workers: Iterable[WorkerRecord]) -> list[WorkerRecord]:
    """``workers`` with each busy pool worker's task and attempt filled in from its record, when
    the claim it names agrees; idle pool workers keep an empty ``task_id``."""
    resolved = []
    for worker in workers:
        if worker.pool is not None and not worker.task_id:
            record = read_pool_worker(layout, worker.pool, worker.name)
            if (
                record is not None
                and record.state == PoolWorkerState.BUSY
                and record.task_id
                and record.attempt
                and claim_holder(layout, record.task_id, record.attempt) == worker.name
            ):
                worker = dataclasses.replace(
                    worker, task_id=record.task_id, attempt=record.attempt
                )
        resolved.append(worker)
    return resolved


def idle_pool_workers(layout: Layout, workers: Iterable[WorkerRecord]) -> dict[str, int]:
    """How many running pool workers wait idle, per profile (resolved ``workers``)."""
    idle: dict[str, int] = {}
    for worker in workers:
        if worker.pool is None or worker.task_id or not worker.running:
            continue
        record = read_pool_worker(layout, worker.pool, worker.name)
        if record is not None and record.state == PoolWorkerState.IDLE:
            idle[record.profile] = idle.get(record.profile, 0) + 1
    return idle


def worker_of_task(layout: Layout, backend: Backend, task_id: str, default: str) -> str:
    """The name of the worker that runs (or ran) a task's current attempt: its own container,
    or the pool worker that claimed it; ``default`` when none is known."""
    snapshot = read_snapshot(layout, task_id)
    names = {worker.name for worker in backend.workers.all()}
    status = snapshot.current_status
    for name in (status.container if status else None, snapshot.claim.worker_id if snapshot.claim else None):
        if name and name in names:
            return name
    return default
