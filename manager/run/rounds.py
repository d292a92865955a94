"""Repair rounds: a task whose check failed gets its next round, at most ``max_repairs`` times.

The dispatcher calls :func:`request_repairs` on every pass: for each task in scope whose latest
result failed *because of its check* (``result.check.passed`` is False), with repair rounds
left, it writes ``rounds/<id>/<n>.json`` (a :class:`RoundRequest` of kind ``repair`` carrying
the failing check) for the next attempt. The attempt allowance counts the round
(:attr:`TaskSnapshot.attempt_allowance`), so the same pass starts it like any ready task. A task
whose last round still fails stays ``failed`` with the check's summary as its error.
:func:`request_round` is the same for a failure seen elsewhere (the integration branch).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from orchestration_protocol import Board, TaskKind, TaskSnapshot, TaskState
from orchestration_protocol.outcomes import CheckOutcome
from orchestration_protocol.paths import Layout
from orchestration_protocol.rounds import request_repair

logger = logging.getLogger(__name__)

REPAIRABLE_KINDS = frozenset({TaskKind.CHANGE, TaskKind.RESOLVE})
"""Kinds of task whose branch a repair round can change (a check or a plan has none)."""


@dataclass(frozen=True)
class RoundAsked:
    """A round the manager asked for."""

    task_id: str
    number: int
    attempt: int
    integration: bool = False


def max_repairs_of(snapshot: TaskSnapshot, default: int) -> int:
    """The task's own ``max_repairs``, else the manager's setting."""
    task = snapshot.task
    return task.max_repairs if task is not None and task.max_repairs is not None else default


def failing_check(snapshot: TaskSnapshot, state: TaskState) -> CheckOutcome | None:
    """The check that failed the task's latest attempt, when that is why it failed."""
    result = snapshot.current_result
    if state != TaskState.FAILED or result is None or result.check is None:
        return None
    return None if result.check.passed else result.check


def repair_due(snapshot: TaskSnapshot, state: TaskState, default_max: int) -> bool:
    """Whether the task's failing check is to get another repair round now."""
    task = snapshot.task
    if task is None or task.kind not in REPAIRABLE_KINDS or snapshot.cancel is not None:
        return False
    if failing_check(snapshot, state) is None:
        return False
    if snapshot.round_for(snapshot.attempt + 1) is not None:
        return False  # asked for already; the dispatcher starts it
    return snapshot.repairs_requested < max_repairs_of(snapshot, default_max)


def request_round(
    layout: Layout, snapshot: TaskSnapshot, failure: CheckOutcome, *, integration: bool = False
) -> RoundAsked | None:
    """Write the next repair round of the task (None when that round was already asked for)."""
    attempt = snapshot.attempt + 1
    request = request_repair(layout, snapshot.task_id, attempt, failure, integration=integration)
    if request is None:
        return None
    logger.info("task %s: repair round %d (attempt %d)", snapshot.task_id, request.number, attempt)
    return RoundAsked(snapshot.task_id, request.number, attempt, integration)


def request_repairs(
    layout: Layout,
    board: Board,
    states: dict[str, TaskState],
    *,
    default_max: int,
    scope: Iterable[str] | None = None,
) -> list[RoundAsked]:
    """Ask for a repair round for every task in ``scope`` whose check failed and has rounds left."""
    chosen = set(scope) if scope is not None else set(board.snapshots)
    asked = []
    for task_id, state in states.items():
        snapshot = board.snapshots.get(task_id)
        if task_id not in chosen or snapshot is None or not repair_due(snapshot, state, default_max):
            continue
        failure = failing_check(snapshot, state)
        if failure is not None and (made := request_round(layout, snapshot, failure)) is not None:
            asked.append(made)
    return asked
