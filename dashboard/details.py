"""One task in full (its files, its patch, its log), and the egress log: the dashboard's reads
beyond the board. Every function takes an id from a URL, so each checks it first: an id that is
not valid is :class:`BadRequest`, one with no task on the volume :class:`NotFound`, both with a
sentence for the page."""

from __future__ import annotations

from typing import Any

from orchestration_protocol import (
    FileTooLarge,
    InvalidTaskId,
    Layout,
    UnsafeFile,
    read_bytes_safely,
    read_task_state,
    utc_now,
    validate_task_id,
)
from orchestration_protocol.archive import layout_of
from orchestration_views.egress import egress_log
from orchestration_views.ledger import LedgerCache
from orchestration_views.logs import regular_size

from .board import dashboard_row

PATCH_LIMIT = 2 * 1024 * 1024
"""The largest patch the page renders (a bigger one is named, with its path)."""
PATCH_NAME = "changes.patch"


class DashboardError(Exception):
    """A request the dashboard cannot answer, with the sentence to show."""

    status_code = 400


class BadRequest(DashboardError):
    status_code = 400


class NotFound(DashboardError):
    status_code = 404


def task_layout(layout: Layout, task_id: str) -> Layout:
    """Where the task's files are: the hot set, or the archive (``orchestrator archive``)."""
    checked_id(layout, task_id)
    return layout_of(layout, task_id)


def checked_id(layout: Layout, task_id: str) -> str:
    """``task_id`` if it is valid and the volume has its task file (archived ones too)."""
    try:
        validate_task_id(task_id)
    except InvalidTaskId as error:
        raise BadRequest(str(error)) from None
    if not layout_of(layout, task_id).task_file(task_id).exists():
        raise NotFound(
            f"No task {task_id!r} on the volume at {layout.root}; it may have been removed, "
            "or the link names another root."
        )
    return task_id


def task_details(layout: Layout, ledgers: LedgerCache, task_id: str) -> dict[str, Any]:
    """Everything the volume says about a task: its row, the task file, the claim holder's
    heartbeat, the result, whether a patch exists, and its egress log."""
    layout = task_layout(layout, task_id)
    now = utc_now()
    snapshot, state = read_task_state(layout, task_id, now=now)
    ledger = ledgers.summary(task_id)
    details = dashboard_row(layout, snapshot, state, now, ledger)
    result = snapshot.current_result
    status = snapshot.current_status
    details["prompt"] = snapshot.task.prompt if snapshot.task else None
    details["task"] = snapshot.task.model_dump(mode="json") if snapshot.task else None
    details["status"] = status.model_dump(mode="json") if status else None
    details["result"] = result.model_dump(mode="json", exclude={"output"}) if result else None
    details["output"] = result.output if result else None
    details["patch_bytes"] = regular_size(layout.artifacts_dir(task_id) / PATCH_NAME)
    details["log_bytes"] = regular_size(layout.log_file(task_id))
    details["egress"] = [
        entry.model_dump(mode="json", exclude_none=True) for entry in egress_log(layout, task_id)
    ]
    details["cost_by_attempt"] = (
        {str(attempt): cost for attempt, cost in ledger.by_attempt.items()} if ledger else {}
    )
    return details


def task_patch(layout: Layout, task_id: str) -> dict[str, Any]:
    """The task's ``changes.patch`` as text; ``patch`` is None with a ``note`` saying why."""
    layout = task_layout(layout, task_id)
    path = layout.artifacts_dir(task_id) / PATCH_NAME
    try:
        data = read_bytes_safely(path, PATCH_LIMIT)
    except FileNotFoundError:
        return {"id": task_id, "patch": None, "note": "No patch: the task changed nothing yet."}
    except FileTooLarge:
        return {
            "id": task_id,
            "patch": None,
            "note": f"The patch is over {PATCH_LIMIT // 1024 // 1024} MiB; read it at {path}.",
        }
    except UnsafeFile as error:
        return {"id": task_id, "patch": None, "note": str(error)}
    return {"id": task_id, "patch": data.decode(errors="replace"), "note": None}


def egress_entries(layout: Layout, limit: int = 500) -> dict[str, Any]:
    """The newest ``limit`` connections of every task, newest last, with the counts."""
    entries = egress_log(layout)
    refused = sum(1 for entry in entries if not entry.allowed)
    return {
        "total": len(entries),
        "refused": refused,
        "entries": [
            entry.model_dump(mode="json", exclude_none=True) for entry in entries[-limit:]
        ],
    }
