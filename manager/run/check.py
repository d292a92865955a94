"""``orchestrator check``: the repository's check on a task's branch or on the integration branch,
as a task of kind ``check`` in the ordinary hardened worker (the normal spawn path: no secret,
no network, the check as the agent's user), and what the check that applies is.

:func:`check_tasks` writes one check task per branch and runs them with the dispatcher;
:func:`check_lines` prints an outcome for people (the output excerpt fenced as untrusted data).
Which check applies to a task: :mod:`manager.git.check_config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestration_protocol import (
    Layout,
    Task,
    TaskKind,
    TaskState,
    read_board,
    read_task_state,
    utc_now,
    write_task,
)
from orchestration_protocol.mirrors import task_branch
from orchestration_protocol.outcomes import CheckOutcome
from orchestration_protocol.untrusted import escape_line, fence

from ..errors import BadInput
from ..git.merge import DEFAULT_INTEGRATION_BRANCH
from .dispatch import Dispatcher
from .spawn import SpawnContext

INTEGRATION = "integration"
"""The target name of the integration branch."""
CHECK_TIMEOUT_S = 1800.0
"""A check task's attempt limit when its check sets none (the check stops itself sooner)."""
EXCERPT_SHOWN = 3000
"""Most characters of a check's output ``orchestrator check`` prints."""


@dataclass(frozen=True)
class CheckTarget:
    """A branch to check, and the task whose check applies (None: the repository's)."""

    name: str
    """A task id, or ``integration``."""
    branch: str
    repo: str | None
    source: Task | None = None


@dataclass
class CheckReport:
    """How one check task ended."""

    target: CheckTarget
    task_id: str
    state: TaskState
    outcome: CheckOutcome | None
    error: str | None

    @property
    def passed(self) -> bool:
        return self.state == TaskState.SUCCESS and self.outcome is not None and self.outcome.passed

    def document(self) -> dict[str, Any]:
        return {
            "target": self.target.name,
            "branch": self.target.branch,
            "check_task": self.task_id,
            "state": self.state.value,
            "passed": self.passed,
            "error": self.error,
            "check": self.outcome.model_dump(mode="json") if self.outcome else None,
        }


def _free_id(layout: Layout, stem: str) -> str:
    stem = stem[:56].rstrip("-.") or "check"
    number = 1
    while layout.task_file(f"{stem}-{number}").exists():
        number += 1
    return f"{stem}-{number}"


def task_target(layout: Layout, task_id: str) -> CheckTarget:
    """The branch of ``task_id`` (what its result names, else ``orchestrator/<id>``)."""
    snapshot, _ = read_task_state(layout, task_id, now=utc_now())
    if snapshot.task is None:
        raise BadInput(f"No task {task_id} on the volume; see 'orchestrator status' for the ids.")
    result = snapshot.current_result or snapshot.result
    branch = (result.branch if result else None) or task_branch(task_id)
    return CheckTarget(task_id, branch, snapshot.task.repo, snapshot.task)


def integration_target(layout: Layout, repo: str | None, branch: str = DEFAULT_INTEGRATION_BRANCH) -> CheckTarget:
    """The integration branch of ``repo`` (None: the repository of the newest task that names
    one, as a run in a new empty repository does, else the configured one)."""
    return CheckTarget(INTEGRATION, branch, repo or latest_repo(layout))


def latest_repo(layout: Layout) -> str | None:
    """The repository the newest task on the volume names (None: none names one)."""
    named = [
        (snapshot.task.created_at.isoformat() if snapshot.task.created_at else "", snapshot.task.repo)
        for snapshot in read_board(layout).snapshots.values()
        if snapshot.task is not None and snapshot.task.repo and snapshot.task.kind != TaskKind.PLAN
    ]
    return max(named)[1] if named else None


def write_check_task(layout: Layout, target: CheckTarget, *, profile: str | None = None) -> Task:
    """A task of kind ``check`` on the target's branch (its source task's check, if it has one)."""
    source = target.source
    return write_task(layout, Task(
        id=_free_id(layout, f"check-{target.name}"),
        prompt=f"Run the repository's check on {target.branch}.",
        kind=TaskKind.CHECK,
        repo=target.repo,
        branch=target.branch,
        profile=profile or (source.profile if source else None),
        check=source.check if source else None,
        check_timeout_s=source.check_timeout_s if source else None,
        timeout_s=CHECK_TIMEOUT_S,
    ))


def check_tasks(
    context: SpawnContext, targets: list[CheckTarget], *, max_workers: int = 4,
    profile: str | None = None,
) -> list[CheckReport]:
    """Check each target in a worker of its own (at most ``max_workers`` at once); the outcomes."""
    layout = context.settings.layout
    layout.ensure()
    tasks = [write_check_task(layout, target, profile=profile) for target in targets]
    dispatcher = Dispatcher(
        context, max_workers=max_workers, scope=[task.id for task in tasks], profile=profile
    )
    dispatcher.run(until_settled=True)
    dispatcher.wait_for_workers()
    return [read_check(layout, target, task.id) for target, task in zip(targets, tasks, strict=True)]


def read_check(layout: Layout, target: CheckTarget, task_id: str) -> CheckReport:
    """The outcome of the check task ``task_id``."""
    snapshot, state = read_task_state(layout, task_id, now=utc_now())
    result = snapshot.current_result
    error = result.error if result else f"the check task ended {state.value} without a result"
    return CheckReport(target, task_id, state, result.check if result else None, error)


def outcome_line(outcome: CheckOutcome) -> str:
    """``passed: exit 0 in 1.2s, 4 passed, 0 failed, 0 errors, 1 skipped``."""
    counts = outcome.counts
    verdict = "passed" if outcome.passed else "FAILED"
    exit_code = "none" if outcome.exit_code is None else str(outcome.exit_code)
    return (
        f"{verdict}: exit {exit_code} in {outcome.duration_s:.1f}s, {counts.passed} passed, "
        f"{counts.failed} failed, {counts.errors} errors, {counts.skipped} skipped"
    )


def check_lines(report: CheckReport) -> list[str]:
    """A check's outcome for people; its output excerpt fenced as untrusted data."""
    head = f"{report.target.name} ({escape_line(report.target.branch)}), check task {report.task_id}"
    outcome = report.outcome
    if outcome is None:
        return [f"{head}: no check ran: {escape_line(report.error or report.state.value)}"]
    lines = [f"{head}: {outcome_line(outcome)}"]
    if outcome.commands:
        lines.append(f"  check: {escape_line(' && '.join(outcome.commands))} ({escape_line(outcome.source or '?')})")
    if outcome.error:
        lines.append(f"  problem: {escape_line(outcome.error)}")
    lines += [f"  failing: {escape_line(name)}" for name in outcome.failing_tests]
    if not outcome.passed and outcome.output_excerpt:
        lines.append(fence(outcome.output_excerpt, "the end of the check's output", limit=EXCERPT_SHOWN))
    return lines
