"""Ended workers are removed once their logs are safe in the volume, so ``docker ps -a`` does
not fill up with the containers (or Swarm jobs, or SLURM job files) of finished attempts.

A worker is removed when all of these hold:

- it has ended (a running worker is never touched: ``docker logs -f`` keeps working);
- its attempt has a result in the volume (the worker's own, or the failed one recovery wrote
  after reading the exit code and the out-of-memory flag), which ended at least
  ``remove_ended_after_s`` ago (``$ORCHESTRATOR_REMOVE_ENDED_AFTER_S``, default 600; ``never``
  keeps every worker);
- the last lines of its own output (what ``docker logs`` shows: the runtime's crash, if it
  crashed) are copied to ``results/<id>/attempts/<n>.worker.log`` first; the agent's output is in
  ``logs/<id>.log`` already.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from orchestration_protocol import Layout, atomic_write_bytes
from orchestration_protocol.claims import attempt_result

from ..backends import Backend, WorkerRecord

logger = logging.getLogger(__name__)

KEPT_LOG_LINES = 500
"""How many of a worker's last output lines are kept in the volume before it is removed."""
KEPT_LOG_BYTES = 256 * 1024


def worker_log_file(layout: Layout, task_id: str, attempt: int) -> Path:
    """Where the ended worker's own output is kept: ``results/<id>/attempts/<n>.worker.log``."""
    return layout.artifacts_dir(task_id) / "attempts" / f"{attempt}.worker.log"


EndedAt = dict[tuple[str, int], datetime]
"""When each (task, attempt) ended, by its result: results are written once per attempt, so a
long-running dispatcher reads each one once, not on every pass."""


def removable(
    layout: Layout, worker: WorkerRecord, now: datetime, after_s: float, ended: EndedAt | None = None
) -> bool:
    """Whether ``worker`` has ended, has its attempt's result, and ended ``after_s`` ago."""
    if worker.running or not worker.task_id or worker.attempt is None:
        return False
    key = (worker.task_id, worker.attempt)
    completed = ended.get(key) if ended is not None else None
    if completed is None:
        result = attempt_result(layout, worker.task_id, worker.attempt)
        if result is None:
            return False
        completed = result.completed_at
        if ended is not None:
            ended[key] = completed
    return now - completed >= timedelta(seconds=after_s)


def keep_worker_log(layout: Layout, backend: Backend, worker: WorkerRecord) -> None:
    """Copy the worker's own last output lines into the volume."""
    assert worker.attempt is not None
    text = backend.workers.logs(worker.name, tail=KEPT_LOG_LINES)
    data = text.encode("utf-8", "replace")[-KEPT_LOG_BYTES:]
    path = worker_log_file(layout, worker.task_id, worker.attempt)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def remove_ended_workers(
    layout: Layout,
    backend: Backend,
    workers: list[WorkerRecord],
    now: datetime,
    after_s: float | None,
    ended: EndedAt | None = None,
) -> list[str]:
    """Remove the ended workers whose logs are safe and whose results are ``after_s`` old (None:
    keep them all); the names removed. A worker the engine will not remove stays, logged.
    ``ended`` remembers the results already read, across passes."""
    if after_s is None:
        return []
    removed = []
    for worker in workers:
        if not removable(layout, worker, now, after_s, ended):
            continue
        try:
            keep_worker_log(layout, backend, worker)
            backend.workers.remove(worker.name)
        except Exception as error:  # an engine hiccup: the next pass tries again
            logger.warning("could not remove the ended worker %s: %s", worker.name, error)
            continue
        removed.append(worker.name)
    return removed
