"""Operations on one task beyond creating it: details, cancel, retry, result."""

from __future__ import annotations

import contextlib
from typing import Any

from orchestration_protocol import (
    Result,
    TaskState,
    next_attempt,
    read_task_state,
    request_cancel,
    utc_now,
)

from .backends import WorkerRecord
from .errors import BadInput, NotFinished, TaskNotSpawnable, TaskUnknown
from .spawn import SpawnContext, spawn_attempt, why_not_spawnable
from .views import task_row


def require_task(layout: Any, task_id: str) -> None:
    """TaskUnknown (one sentence) unless a task file of that id exists."""
    if not layout.task_file(task_id).exists():
        raise TaskUnknown(
            f"No task {task_id!r} in {layout.tasks_dir}; see 'orchestrator task list' for the ids."
        )


def task_details(layout: Any, task_id: str) -> dict[str, Any]:
    """Everything the volume says about a task, JSON-ready."""
    require_task(layout, task_id)
    now = utc_now()
    snapshot, state = read_task_state(layout, task_id, now=now)
    details = task_row(snapshot, state, now)
    details["task"] = snapshot.task.model_dump(mode="json") if snapshot.task else None
    details["claim"] = snapshot.claim.model_dump(mode="json") if snapshot.claim else None
    details["status"] = (
        snapshot.current_status.model_dump(mode="json") if snapshot.current_status else None
    )
    details["result"] = (
        snapshot.current_result.model_dump(mode="json") if snapshot.current_result else None
    )
    details["cancel_requested"] = snapshot.cancel is not None
    details["log_file"] = str(layout.log_file(task_id))
    return details


def cancel_task(layout: Any, task_id: str, reason: str | None) -> TaskState:
    """Ask a task to stop; a task nobody runs is cancelled at once. Its state after that."""
    require_task(layout, task_id)
    return request_cancel(layout, task_id, reason)


def current_result(layout: Any, task_id: str) -> Result:
    """The task's result; NotFinished (one sentence) while it has none."""
    require_task(layout, task_id)
    snapshot, state = read_task_state(layout, task_id, now=utc_now())
    if snapshot.current_result is None:
        raise NotFinished(
            f"Task {task_id} has no result yet (it is {state.value}); wait for it with "
            f"'orchestrator wait {task_id}'."
        )
    return snapshot.current_result


def retry_task(
    context: SpawnContext, task_id: str, profile: str | None = None
) -> tuple[int, WorkerRecord]:
    """Run a finished task again: withdraw its cancel request, then start the next attempt, beyond
    ``max_attempts`` if need be (the worker is then told to force its claim)."""
    layout = context.settings.layout
    require_task(layout, task_id)
    snapshot, state = read_task_state(layout, task_id, now=utc_now())
    if snapshot.task is None:
        raise BadInput(
            str(snapshot.problems[0]) if snapshot.problems else f"Task {task_id} is unreadable."
        )
    if state in (TaskState.RUNNING, TaskState.PENDING, TaskState.BLOCKED, TaskState.SUCCESS):
        raise TaskNotSpawnable(
            why_not_spawnable(snapshot, state).replace(
                f"run 'orchestrator task retry {task_id}' to run it again", "nothing to retry"
            )
        )
    with contextlib.suppress(FileNotFoundError):
        layout.cancel_file(task_id).unlink()
    snapshot, state = read_task_state(layout, task_id, now=utc_now())
    if snapshot.task is None:
        raise BadInput(f"Task {task_id} became unreadable; see 'orchestrator status'.")
    attempt = next_attempt(snapshot, state)
    force = attempt is None
    if force:
        attempt = next_attempt(snapshot, state, force=True)
    if attempt is None:
        raise TaskNotSpawnable(why_not_spawnable(snapshot, state))
    return attempt, spawn_attempt(context, snapshot.task, attempt, profile, force=force)
