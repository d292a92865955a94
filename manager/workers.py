"""Workers as a person sees them: their logs, and cleaning up the ended ones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from orchestration_protocol import Layout, read_task_state, utc_now
from orchestration_protocol.pool import remove_pool_worker

from .backends import Backend

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


def _tail(text: str, lines: int | None) -> str:
    if not lines:
        return text
    return "".join(text.splitlines(keepends=True)[-lines:])


def read_log(layout: Layout, task_id: str, tail: int | None = None) -> str:
    """The task's log (``logs/<id>.log``: the agent's output, across attempts)."""
    try:
        return _tail(layout.log_file(task_id).read_text(errors="replace"), tail)
    except FileNotFoundError:
        return ""


def _finished(layout: Layout, task_id: str) -> bool:
    snapshot, state = read_task_state(layout, task_id, now=utc_now())
    return snapshot.current_result is not None or state.value == "invalid"


def follow_log(layout: Layout, task_id: str, tail: int | None = None) -> Iterator[str]:
    """The log so far, then what is appended, until the task has its result."""
    path: Path = layout.log_file(task_id)
    text = read_log(layout, task_id, tail)
    offset = len(text.encode()) if not tail else _size(path)
    if text:
        yield text
    while True:
        finished = _finished(layout, task_id)
        size = _size(path)
        if size > offset:
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read(size - offset)
            offset += len(chunk)
            yield chunk.decode(errors="replace")
        elif finished:
            return
        else:
            time.sleep(FOLLOW_POLL_S)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
