"""Workers as a person sees them: their logs, and cleaning up the ended ones."""

from __future__ import annotations

import time
from collections.abc import Iterator

from orchestration_protocol import Layout, read_task_state, utc_now
from orchestration_protocol.pool import remove_pool_worker
from orchestration_views.logs import LogTail

from ..backends import Backend

FOLLOW_POLL_S = 0.25


def cleanup_workers(
    backend: Backend, *, include_running: bool = False, layout: Layout | None = None
) -> list[str]:
    """Remove ended workers (and, with ``include_running``, stop and remove running ones); a
    warm pool's worker with its record in ``layout``."""
    removed = []
    for worker in backend.workers.all():
        if worker.running:
            if not include_running:
                continue
            backend.workers.stop(worker.name, timeout_s=10)
        backend.workers.remove(worker.name)
        if worker.pool is not None and layout is not None:
            remove_pool_worker(layout, worker.pool, worker.name)
        removed.append(worker.name)
    backend.workers.tidy()
    return removed


def read_log(layout: Layout, task_id: str, tail: int | None = None) -> str:
    """The task's log (``logs/<id>.log``: the agent's output, across attempts): its last ``tail``
    lines, or all of it."""
    reader = LogTail(layout.log_file(task_id))
    if tail:
        reader.start_at_lines(tail)
    return reader.read_rest()


def _finished(layout: Layout, task_id: str) -> bool:
    snapshot, state = read_task_state(layout, task_id, now=utc_now())
    return snapshot.current_result is not None or state.value == "invalid"


def follow_log(layout: Layout, task_id: str, tail: int | None = None) -> Iterator[str]:
    """The log so far (its last ``tail`` lines), then what is appended, until the task has its
    result."""
    reader = LogTail(layout.log_file(task_id))
    if tail:
        reader.start_at_lines(tail)
    while True:
        finished = _finished(layout, task_id)
        if text := reader.read_rest():
            yield text
        elif finished:
            return
        else:
            time.sleep(FOLLOW_POLL_S)
