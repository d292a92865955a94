"""Which task a pool worker runs: a busy pool worker's record names its task and attempt, and
counts only when that attempt's claim names the worker too. Every view (status, logs, dispatch,
recovery) reads pool workers through here, so they see the same records as for a task's own
worker; the pool's machinery itself is in :mod:`.pool`."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from orchestration_protocol import Claim, InvalidFile, Layout, read_model_if_exists, read_snapshot
from orchestration_protocol.pool import (
    PoolWorker,
    PoolWorkerState,
    read_pool_worker,
    worker_record_file,
)

from ..backends import Backend, WorkerRecord

T = TypeVar("T")
CACHED_FILES = 4096
"""Most files a :class:`ChangedFiles` remembers (it forgets them all past that)."""


class ChangedFiles(Generic[T]):
    """What was read from files, read again only when a file changed (its inode, size or
    mtime): the dispatcher and the pool look at every pool worker's record and claim on every
    tick, and those files change once or twice in a worker's life."""

    def __init__(self) -> None:
        self._known: dict[Path, tuple[tuple[int, int, int], T]] = {}
        self._lock = threading.Lock()

    def read(self, path: Path, read: Callable[[], T], missing: T) -> T:
        """``read()``'s value for ``path`` as it is now (``missing`` when there is no file)."""
        try:
            info = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            with self._lock:
                self._known.pop(path, None)
            return missing
        signature = (info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:
            known = self._known.get(path)
        if known is not None and known[0] == signature:
            return known[1]
        value = read()
        with self._lock:
            if len(self._known) >= CACHED_FILES:
                self._known.clear()
            self._known[path] = (signature, value)
        return value


_records: ChangedFiles[PoolWorker | None] = ChangedFiles()
_claims: ChangedFiles[str | None] = ChangedFiles()


def pool_record(layout: Layout, pool: str, name: str) -> PoolWorker | None:
    """A pool worker's record (``read_pool_worker``), parsed again only when its file changed."""
    path = worker_record_file(layout, pool, name)
    return _records.read(path, lambda: read_pool_worker(layout, pool, name), None)


def claim_holder(layout: Layout, task_id: str, attempt: int) -> str | None:
    """Who holds the claim of that attempt (None when there is none, or it is unreadable)."""

    def holder() -> str | None:
        try:
            claim = read_model_if_exists(layout.claim_file(task_id, attempt), Claim, task_id)
        except (InvalidFile, ValueError):
            return None
        return claim.worker_id if claim is not None else None

    return _claims.read(layout.claim_file(task_id, attempt), holder, None)


def with_pool_tasks(layout: Layout, workers: Iterable[WorkerRecord]) -> list[WorkerRecord]:
    """``workers`` with each busy pool worker's task and attempt filled in from its record, when
    the claim it names agrees; idle pool workers keep an empty ``task_id``."""
    resolved = []
    for worker in workers:
        if worker.pool is not None and not worker.task_id:
            record = pool_record(layout, worker.pool, worker.name)
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
        record = pool_record(layout, worker.pool, worker.name)
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
