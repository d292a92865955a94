"""Whether a set of tasks is finished, and how: the rule behind ``wait``, ``run`` and ``watch``.

A task is *settled* when nothing more will happen to it: it succeeded; or it ended (failed,
timeout, lost) with no attempt left; or it was cancelled or is invalid; or it can never start
because a dependency (directly or through others, or through a cycle) can no longer succeed. So a
task blocked behind a failed dependency does not keep ``wait`` waiting forever.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestration_protocol import Board, TaskState, next_attempt


@dataclass(frozen=True)
class Progress:
    """The states of the tasks in scope, and which of them are settled."""

    states: dict[str, TaskState]
    settled: dict[str, bool]
    doomed: frozenset[str] = field(default_factory=frozenset)
    """Tasks that can never succeed although they have not ended (blocked by a failure)."""

    @property
    def done(self) -> bool:
        return all(self.settled.values())

    @property
    def succeeded(self) -> bool:
        return self.done and all(state == TaskState.SUCCESS for state in self.states.values())

    def counts(self) -> dict[str, int]:
        return dict(Counter(state.value for state in self.states.values()))

    def summary(self) -> str:
        counts = self.counts()
        return ", ".join(f"{counts[name]} {name}" for name in sorted(counts)) or "no tasks"


def can_still_succeed(board: Board, states: dict[str, TaskState]) -> dict[str, bool]:
    """Per task: whether it has succeeded or still may (cycles and missing tasks may not)."""
    verdict: dict[str, bool] = {}
    visiting: set[str] = set()

    def judge(task_id: str) -> bool:
        if task_id in verdict:
            return verdict[task_id]
        snapshot, state = board.snapshots.get(task_id), states.get(task_id)
        if snapshot is None or state is None or snapshot.task is None or task_id in visiting:
            return False
        if state == TaskState.SUCCESS:
            result = True
        elif state.never_succeeds:
            result = False
        elif state.ended_unsuccessfully:
            result = next_attempt(snapshot, state) is not None
        elif snapshot.cancel is not None and not state.has_live_worker:
            result = False
        else:
            visiting.add(task_id)
            result = all(judge(dep) for dep in snapshot.task.depends_on)
            visiting.discard(task_id)
        verdict[task_id] = result
        return result

    for task_id in board.snapshots:
        judge(task_id)
    return verdict


def assess(
    board: Board, states: dict[str, TaskState], scope: Iterable[str] | None = None
) -> Progress:
    """The progress of the tasks in ``scope`` (every task on the board when None)."""
    ids = list(board.snapshots) if scope is None else list(scope)
    hopeful = can_still_succeed(board, states)
    scoped = {task_id: states.get(task_id, TaskState.INVALID) for task_id in ids}
    settled: dict[str, bool] = {}
    doomed: set[str] = set()
    for task_id, state in scoped.items():
        if state.has_live_worker:
            settled[task_id] = False  # a result is coming, whatever happens
        else:
            settled[task_id] = state == TaskState.SUCCESS or not hopeful.get(task_id, False)
        if settled[task_id] and not state.is_final:
            doomed.add(task_id)
    return Progress(states=scoped, settled=settled, doomed=frozenset(doomed))
