"""``orchestrator task retry``: a finished task's next attempt, beyond ``max_attempts`` if need be."""

from __future__ import annotations

import contextlib

from orchestration_protocol import (
    TaskState,
    latest_claim_attempt,
    next_attempt,
    read_task_state,
    utc_now,
)
from orchestration_protocol.contract import WorkerExit

from ..backends import WorkerRecord
from ..errors import BadInput, TaskNotSpawnable
from ..polling import poll_until
from ..tasks.operations import require_task
from .spawn import SpawnContext, spawn_attempt, why_not_spawnable

FORCED_CLAIM_S = 20.0
"""How long a forced attempt may take to be claimed before the retry stops waiting for it."""


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
    worker = spawn_attempt(context, snapshot.task, attempt, profile, force=force)
    if force:
        _confirm_forced_claim(context, task_id, attempt, worker.name)
    return attempt, worker


def _confirm_forced_claim(context: SpawnContext, task_id: str, attempt: int, name: str) -> None:
    """Wait until the forced attempt is claimed; a worker that refuses ``--force`` (exit 2, an
    older worker image) is one sentence with the fix, not a retry that silently never runs."""
    layout = context.settings.layout

    def claimed_or_ended() -> bool:
        if latest_claim_attempt(layout, task_id) >= attempt:
            return True
        ended = [w for w in context.backend.workers.all() if w.name == name and not w.running]
        if ended and ended[0].exit_code == WorkerExit.USAGE:
            raise TaskNotSpawnable(
                f"The worker refused a retry beyond max_attempts (it has no --force); update "
                f"the worker image (scripts/build-images.sh), or create a new task for {task_id}."
            )
        return bool(ended)

    poll_until(claimed_or_ended, timeout_s=FORCED_CLAIM_S, interval_s=0.1)
