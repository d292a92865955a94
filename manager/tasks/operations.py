"""Operations on one task beyond creating it: details, cancel, result (retry is
:mod:`manager.run.retry`: it starts a worker)."""

from __future__ import annotations

from typing import Any

from orchestration_protocol import (
    Result,
    TaskState,
    read_task_state,
    request_cancel,
    utc_now,
)
from orchestration_protocol.archive import layout_of
from orchestration_views.ledger import ledger_cache
from orchestration_views.rows import task_row

from ..errors import NotFinished, TaskUnknown


def require_task(layout: Any, task_id: str) -> None:
    """TaskUnknown (one sentence) unless a task file of that id exists (archived ones too)."""
    if not layout_of(layout, task_id).task_file(task_id).exists():
        raise TaskUnknown(
            f"No task {task_id!r} in {layout.tasks_dir}; see 'orchestrator task list' for the ids."
        )


def task_details(layout: Any, task_id: str) -> dict[str, Any]:
    """Everything the volume says about a task, JSON-ready."""
    require_task(layout, task_id)
    layout = layout_of(layout, task_id)
    now = utc_now()
    snapshot, state = read_task_state(layout, task_id, now=now)
    details = task_row(snapshot, state, now, ledger_cache(layout).summary(task_id))
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
    snapshot, state = read_task_state(layout_of(layout, task_id), task_id, now=utc_now())
    if snapshot.current_result is None:
        raise NotFinished(
            f"Task {task_id} has no result yet (it is {state.value}); wait for it with "
            f"'orchestrator wait {task_id}'."
        )
    return snapshot.current_result
