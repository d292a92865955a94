"""One row per task, JSON-ready, and the files that could not be used: what ``orchestrator
status`` and the dashboard both show, from one derivation."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from orchestration_protocol import Board, Layout, Result, TaskKind, TaskSnapshot, TaskState
from orchestration_protocol.priorities import PRIORITIES_FILE, Priorities

from .ledger import LedgerCache, LedgerSummary, task_cost, total_cost


def root_problem(layout: Layout) -> str | None:
    """Why ``layout`` holds no tasks to show, in one sentence; None when it does. A root is a root
    once it has ``tasks/``: the manual flow drops task files there before anything else runs, and
    ``orchestrator status`` lists them, so every view does."""
    root = layout.root
    if not root.exists():
        return (
            f"No orchestration root at {root}: start the dispatcher (it makes one), or give "
            "the right one with --root or $ORCHESTRATION_DIR."
        )
    if not root.is_dir():
        return f"{root} is not a directory; give the orchestration root with --root."
    if not layout.tasks_dir.is_dir():
        return (
            f"{root} is not an orchestration root yet (no tasks/); create a task with "
            "'orchestrator task create' or drop task files into tasks/."
        )
    if not os.access(layout.tasks_dir, os.R_OK | os.X_OK):
        return f"{layout.tasks_dir} cannot be read by this process; run the viewer as its owner."
    return None


def format_age(seconds: float | None) -> str:
    """``12s``, ``4m``, ``3h``, ``2d``; empty when unknown."""
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _since(moment: datetime | None, now: datetime) -> float | None:
    return (now - moment).total_seconds() if moment else None


def task_row(
    snapshot: TaskSnapshot,
    state: TaskState,
    now: datetime,
    ledger: LedgerSummary | None = None,
    priorities: Priorities | None = None,
) -> dict[str, Any]:
    """Everything ``status`` shows about one task, JSON-ready; its cost from ``ledger`` (the
    gateway's), else from its result; its priority by ``priorities`` (the root's
    priorities.csv), else its file's."""
    task, claim, result = snapshot.task, snapshot.claim, snapshot.current_result
    status = snapshot.current_status
    cost = task_cost(snapshot, ledger)
    row: dict[str, Any] = {
        "id": snapshot.task_id,
        "state": state.value,
        "attempt": snapshot.attempt,
        "max_attempts": task.max_attempts if task else None,
        "profile": task.profile if task else None,
        "agent": task.agent.value if task else None,
        "kind": task.kind.value if task else None,
        "priority": (priorities or Priorities()).priority_of(task) if task else None,
        "depends_on": list(task.depends_on) if task else [],
        "created_at": task.created_at.isoformat() if task and task.created_at else None,
        "age_s": _since(
            (task.created_at if task else None) or (claim.claimed_at if claim else None), now
        ),
        "worker": (status.worker_id if status else claim.worker_id if claim else None),
        "phase": status.phase.value if status and not result else None,
        "heartbeat_age_s": _since(status.heartbeat_at, now) if status and not result else None,
        "cost_usd": cost.cost_usd,
        "cost_source": cost.source,
        "max_budget_usd": task.max_budget_usd if task else None,
        "budget_error": cost.budget_error,
        "branch": result.branch if result else None,
        "pushed": result.pushed if result else None,
        "duration_s": result.duration_s if result else None,
        "files_changed": list(result.files_changed) if result else [],
        "error": result.error if result else None,
        "problems": [str(problem) for problem in snapshot.problems],
        "prompt": task.prompt if task else None,
        "round": _round_label(snapshot),
        "rounds": task_rounds(snapshot),
        "check": check_state(result),
        "checked_branch": task.branch if task and task.kind == TaskKind.CHECK else None,
    }
    return row


def _round_label(snapshot: TaskSnapshot) -> str | None:
    """``repair 2`` etc: the round the task's latest attempt ran, or waits for."""
    result = snapshot.current_result
    if result is not None and result.round is not None:
        return f"{result.round.kind.value} {result.round.number}"
    asked = snapshot.round_for(snapshot.attempt) or snapshot.round_for(snapshot.attempt + 1)
    if asked is not None:
        return f"{asked.kind.value} {asked.number}"
    return None


def task_rounds(snapshot: TaskSnapshot) -> list[dict[str, Any]]:
    """The task's rounds: its first run (or check, or resolve), then each round asked for, with
    how it ended when its result is the one on the volume."""
    task = snapshot.task
    first = "run" if task is None or task.kind in (TaskKind.CHANGE, TaskKind.PLAN) else task.kind.value
    rounds: list[dict[str, Any]] = [{"number": 1, "kind": first, "attempt": 1, "integration": False}]
    rounds += [
        {"number": r.number, "kind": r.kind.value, "attempt": r.attempt, "integration": r.integration}
        for r in snapshot.rounds
    ]
    result = snapshot.result
    for entry in rounds:
        if result is not None and result.round is not None and result.round.number == entry["number"]:
            entry["check_passes"] = result.round.check_passes
            entry["session"] = result.round.session.value
    return rounds


def check_state(result: Result | None) -> str | None:
    """``passed``, ``failed``, or None (no check ran) for a result; with its counts."""
    if result is None or result.check is None:
        return None
    check = result.check
    counts = check.counts
    said = "passed" if check.passed else "failed"
    return f"{said} ({counts.passed} passed, {counts.failed + counts.errors} failing)"


def branch_checks(board: Board, states: dict[str, TaskState]) -> dict[str, dict[str, Any]]:
    """Per branch, its latest check task's verdict: ``{"task", "state", "check"}`` (the
    integration branch included), from the tasks of kind ``check`` on the board."""
    latest: dict[str, tuple[str, dict[str, Any]]] = {}
    for task_id, snapshot in board.snapshots.items():
        task = snapshot.task
        if task is None or task.kind != TaskKind.CHECK or not task.branch:
            continue
        made = task.created_at.isoformat() if task.created_at else ""
        if task.branch in latest and latest[task.branch][0] > made:
            continue
        result = snapshot.current_result
        verdict = check_state(result) or (
            "running" if not states.get(task_id, TaskState.PENDING).is_final else "no check ran"
        )
        latest[task.branch] = (made, {"task": task_id, "state": states.get(task_id, TaskState.PENDING).value, "check": verdict})
    return {branch: entry for branch, (_, entry) in sorted(latest.items())}


def status_rows(
    board: Board,
    states: dict[str, TaskState],
    now: datetime,
    ids: list[str] | None = None,
    ledgers: LedgerCache | None = None,
    priorities: Priorities | None = None,
) -> list[dict[str, Any]]:
    """Rows for ``ids`` (every task when None) in the queue's order (the highest priority
    first, then the oldest); costs from ``ledgers`` if given."""
    chosen = [
        i for i in (ids if ids is not None else list(board.snapshots)) if i in board.snapshots
    ]
    costs = ledgers.summaries(chosen) if ledgers else {}
    rows = [task_row(board.snapshots[i], states[i], now, costs.get(i), priorities) for i in chosen]
    return sorted(
        rows, key=lambda row: (-(row["priority"] or 0), row["created_at"] or "", row["id"])
    )


def rows_total_cost(rows: list[dict[str, Any]]) -> float:
    """What the rows' tasks cost together."""
    return total_cost([row["cost_usd"] for row in rows])


def cost_lines(rows: list[dict[str, Any]], fleet: dict[str, Any] | None) -> list[str]:
    """The total cost of the rows, and the fleet budget with what was spent of it."""
    lines = [f"total cost: ${rows_total_cost(rows):.4f}"]
    if fleet is not None:
        lines.append(
            f"fleet budget: ${fleet['spent_usd']:.4f} of ${fleet['usd']:.4f} spent "
            f"(${fleet['left_usd']:.4f} left) since {fleet['since'][:19].replace('T', ' ')} UTC"
        )
    return lines


def board_problems(board: Board, priorities: Priorities | None = None) -> list[dict[str, str]]:
    """Files that could not be used: stray names in tasks/, unreadable files of any task, and
    the bad lines of the priorities file."""
    problems = [{"file": str(error.path), "error": str(error)} for error in board.stray_files]
    if priorities is not None:
        file = str(priorities.path or PRIORITIES_FILE)
        problems.extend({"file": file, "error": bad.message} for bad in priorities.problems)
    for snapshot in board.snapshots.values():
        problems.extend(
            {"file": str(problem.path), "error": str(problem)} for problem in snapshot.problems
        )
    return problems


AGENT_WRITTEN = ("output", "error", "files_changed", "patch", "plan")
"""A result's fields that hold what a task's agent wrote: data to report, never instructions."""


def result_json(result: Result, ledger: LedgerSummary | None = None) -> dict[str, Any]:
    """A result for ``--json``: the file's fields, and what the ledger says of the attempt."""
    data = result.model_dump(mode="json", exclude_none=True)
    data["untrusted_fields"] = [key for key in AGENT_WRITTEN if key in data]
    if ledger is not None:
        data["ledger_cost_usd"] = ledger.by_attempt.get(result.attempt, 0.0)
        data["task_cost_usd"] = ledger.cost_usd
        budget_error = ledger.budget_errors.get(result.attempt)
        if budget_error:
            data["budget_error"] = budget_error
    return data
