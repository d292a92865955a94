"""Ended tasks moved out of the hot set: ``archive/`` under the root is a layout of its own
(``archive/tasks``, ``archive/results``, ``archive/claims``, ...), so every reader that takes a
:class:`Layout` reads an archived task as it read it before (``result``, ``logs``, the
dashboard), and the views that scan the hot set (``status``, ``watch``, the dispatcher) no longer
read it at all.

Only a task whose state is final (success, failed, cancelled, timeout: never pending, blocked,
running or lost) and whose claim holds no fresh lease is moved. The task file moves first, so a
crash half-way leaves no task in the hot set that looks pending (the dispatcher would run it
again): what stays behind is finished by the next ``archive`` (:func:`finish_moves`).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from .paths import Layout, is_valid_task_id, validate_task_id
from .state import TaskSnapshot, TaskState, read_task_state

ARCHIVE_DIR = "archive"


def archive_layout(layout: Layout) -> Layout:
    """The archive of ``layout``'s root, itself a layout."""
    return Layout(layout.root / ARCHIVE_DIR)


def layout_of(layout: Layout, task_id: str) -> Layout:
    """Where a task's files are: the hot set, or the archive once it was archived."""
    if os.path.lexists(layout.task_file(task_id)):
        return layout
    archived = archive_layout(layout)
    return archived if os.path.lexists(archived.task_file(task_id)) else layout


def _task_paths(layout: Layout, task_id: str) -> list[Path]:
    """Every file or directory of a task in ``layout``, the task file first."""
    return [
        layout.task_file(task_id),
        layout.claim_dir(task_id),
        layout.status_file(task_id),
        layout.result_file(task_id),
        layout.artifacts_dir(task_id),
        layout.log_file(task_id),
        layout.cancel_file(task_id),
    ]


def archivable(
    snapshot: TaskSnapshot,
    state: TaskState,
    before: datetime | None,
    states: set[TaskState] | None,
) -> bool:
    """Whether a task may be archived: final, ended before ``before``, in ``states``."""
    if not state.is_final or snapshot.task is None or state.has_live_worker:
        return False
    if states is not None and state not in states:
        return False
    ended = snapshot.result.completed_at if snapshot.result else None
    return before is None or (ended is not None and ended < before)


def archive_task(layout: Layout, task_id: str) -> None:
    """Move one task's files into the archive (the task file first)."""
    target = archive_layout(layout)
    for source, destination in zip(
        _task_paths(layout, validate_task_id(task_id)), _task_paths(target, task_id), strict=True
    ):
        if os.path.lexists(source):
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, destination)


def finish_moves(layout: Layout) -> list[str]:
    """Move what an interrupted archive left in the hot set (an archived task's other files);
    the tasks finished."""
    target = archive_layout(layout)
    try:
        names = os.listdir(target.tasks_dir)
    except FileNotFoundError:
        return []
    finished = []
    for name in names:
        task_id = name.removesuffix(".json")
        if not is_valid_task_id(task_id) or os.path.lexists(layout.task_file(task_id)):
            continue
        if any(os.path.lexists(path) for path in _task_paths(layout, task_id)[1:]):
            archive_task(layout, task_id)
            finished.append(task_id)
    return finished


def archive_ended(
    layout: Layout,
    *,
    before: datetime | None = None,
    states: set[TaskState] | None = None,
    now: datetime,
) -> list[str]:
    """Archive every task that :func:`archivable` allows and that no task staying in the hot
    set depends on (directly or through others); the ids archived."""
    finish_moves(layout)
    try:
        names = sorted(os.listdir(layout.tasks_dir))
    except FileNotFoundError:
        return []
    ids = [n.removesuffix(".json") for n in names if n.endswith(".json")]
    read = {i: read_task_state(layout, i, now=now) for i in ids if is_valid_task_id(i)}
    candidates = {i for i, (snap, state) in read.items() if archivable(snap, state, before, states)}
    needed = _needed(read, set(read) - candidates)
    archived = sorted(candidates - needed)
    for task_id in archived:
        archive_task(layout, task_id)
    return archived


def _needed(read: dict[str, tuple[TaskSnapshot, TaskState]], staying: set[str]) -> set[str]:
    """Every task that a staying task depends on, through any chain."""
    needed: set[str] = set()
    pending = list(staying)
    while pending:
        snapshot = read.get(pending.pop())
        for dep in snapshot[0].task.depends_on if snapshot and snapshot[0].task else []:
            if dep not in needed:
                needed.add(dep)
                pending.append(dep)
    return needed
