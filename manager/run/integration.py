"""After the merge: conflicts get a resolver, the integration branch gets its check, and a failing
check goes back to the task that caused it (issue 18, "the merge" and "conflicts").

:func:`close_the_loop` repeats, a bounded number of times: merge what succeeded into
``orchestrator/integration``; a conflict becomes a task of kind ``resolve`` (the integration
branch with the conflicting branch merged in; its prompt states the integration side's intent,
the worker adds the other task's) and, once it succeeded, its branch is merged in its place;
then the integration branch is checked (a task of kind ``check``). A failing check is
attributed (:func:`orchestration_protocol.attribution.attribute_failure`: the merge re-checked
with one branch left out at a time, each a temporary branch ``orchestrator/recheck-<n>`` built
in a throwaway clone and pushed into the mirror, checked by a check task); the blamed task gets
a repair round with the integration failure as its input, or, where only the combination fails,
a ``fix-integration`` task works on the integration branch. Then the merge goes on.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestration_protocol import (
    Layout,
    Task,
    TaskKind,
    TaskState,
    read_task_state,
    utc_now,
    write_task,
)
from orchestration_protocol.attribution import Attribution, Blame, attribute_failure
from orchestration_protocol.mirrors import mirror_dir, task_branch
from orchestration_protocol.outcomes import CheckOutcome
from orchestration_protocol.untrusted import fence

from ..git.greenfield import integrate
from ..git.merge import DEFAULT_INTEGRATION_BRANCH, MergeOutcome, MergeReport, merge_tasks
from .check import CheckReport, CheckTarget, check_tasks, integration_target
from .dispatch import Dispatcher
from .rounds import max_repairs_of, request_round
from .spawn import SpawnContext

Say = Callable[[str], None]
RECHECK_PREFIX = "orchestrator/recheck-"
"""Temporary branches of the re-checks (the merge with one branch left out)."""
MERGED = (MergeOutcome.MERGED, MergeOutcome.ALREADY_MERGED)


@dataclass
class LoopReport:
    """What happened after the merge."""

    merge: MergeReport
    """The last merge."""
    check: CheckReport | None = None
    """The last check of the integration branch (None: no merge to check)."""
    repaired: list[str] = field(default_factory=list)
    """What was sent back and fixed: ``<task>: repaired after the integration check`` etc."""
    resolvers: dict[str, str] = field(default_factory=dict)
    """Conflicting task -> its resolver task."""
    fixers: list[str] = field(default_factory=list)
    """The fix-integration tasks made."""
    attributions: list[Attribution] = field(default_factory=list)
    """What each failing integration check was attributed to."""

    @property
    def check_state(self) -> str:
        """``passed``, ``failed``, or ``none`` (no check applies, or none ran)."""
        if self.check is None or self.check.outcome is None:
            return "none"
        return "passed" if self.check.passed else "failed"


def _run_scope(context: SpawnContext, ids: list[str], max_workers: int) -> None:
    dispatcher = Dispatcher(context, max_workers=max_workers, scope=ids)
    dispatcher.run(until_settled=True)
    dispatcher.wait_for_workers()


def _succeeded(layout: Layout, task_id: str) -> bool:
    return read_task_state(layout, task_id, now=utc_now())[1] == TaskState.SUCCESS


def resolver_for(layout: Layout, url: str, report: MergeReport, conflicting: str) -> Task:
    """A task of kind ``resolve``: the integration branch with ``conflicting``'s branch merged in.
    Its prompt is the integration side's intent (the merged tasks' prompts, as data)."""
    merged = [task.task_id for task in report.tasks if task.outcome in MERGED]
    intents = []
    for task_id in merged:
        snapshot, _ = read_task_state(layout, task_id, now=utc_now())
        if snapshot.task is not None:
            intents.append(f"task {task_id}: {snapshot.task.prompt}")
    prompt = (
        f"Keep what the integration branch {report.integration_branch} already holds (the work "
        f"of {', '.join(merged) or 'no task yet'}) and what task {conflicting} adds.\n\n"
        + "\n\n".join(intents)
    )
    number = 1
    while layout.task_file(f"resolve-{conflicting}-{number}"[:64]).exists():
        number += 1
    return write_task(layout, Task(
        id=f"resolve-{conflicting}-{number}"[:64],
        prompt=prompt,
        kind=TaskKind.RESOLVE,
        repo=url,
        branch=report.integration_branch,
        merge_branch=task_branch(conflicting),
    ))


def fix_integration_task(layout: Layout, url: str, failure: CheckOutcome, blamed: list[str]) -> Task:
    """A task on the integration branch to make its check pass where no one branch breaks it."""
    number = 1
    while layout.task_file(f"fix-integration-{number}").exists():
        number += 1
    summary = "\n".join([*failure.failing_tests, failure.output_excerpt])
    prompt = (
        f"The repository's check fails on {DEFAULT_INTEGRATION_BRANCH}, where the branches of "
        f"{', '.join(blamed) or 'several tasks'} were merged, although each passes alone. Fix "
        "the code so that the check passes, keeping every task's intent.\n\n"
        + fence(summary, "the output of the failing check", limit=6000)
    )
    return write_task(layout, Task(
        id=f"fix-integration-{number}", prompt=prompt, repo=url, branch=DEFAULT_INTEGRATION_BRANCH,
    ))


class Rechecks:
    """``passes(ids)`` for :func:`attribute_failure`: merge those tasks onto the base branch in a
    throwaway clone, push it as ``orchestrator/recheck-<n>``, check it in a check task."""

    def __init__(self, context: SpawnContext, url: str, base: str) -> None:
        self.context, self.url, self.base = context, url, base
        self.made: list[str] = []

    def passes(self, task_ids: list[str]) -> bool:
        layout = self.context.settings.layout
        branch = f"{RECHECK_PREFIX}{len(self.made) + 1}"
        self.made.append(branch)
        work = Path(tempfile.mkdtemp(prefix="orchestrator-recheck-"))
        try:
            subprocess.run(
                ["git", "clone", "--quiet", "--branch", self.base, str(mirror_dir(layout, self.url)),
                 str(work / "repo")], check=True, capture_output=True,
            )
            merge_tasks(layout, work / "repo", task_ids, integration_branch=branch, push=True,
                        repo_url=self.url, credentials=self.context.secrets)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        target = CheckTarget(f"recheck-{len(self.made)}", branch, self.url)
        return check_tasks(self.context, [target])[0].passed

    def tidy(self) -> None:
        """Delete the temporary branches from the mirror."""
        mirror = mirror_dir(self.context.settings.layout, self.url)
        for branch in self.made:
            subprocess.run(["git", f"--git-dir={mirror}", "branch", "-D", branch],
                           capture_output=True, check=False)


def send_back(
    context: SpawnContext, url: str, base: str, report: LoopReport, failure: CheckOutcome, say: Say
) -> list[str]:
    """Attribute a failing integration check; the tasks to run next (a repair round, or a
    fix-integration task)."""
    layout = context.settings.layout
    merged = [task.task_id for task in report.merge.tasks if task.outcome in MERGED
              and not task.task_id.startswith("fix-integration-")]
    rechecks = Rechecks(context, url, base)
    try:
        blame = attribute_failure(merged, rechecks.passes, known_failing=True)
    finally:
        rechecks.tidy()
    report.attributions.append(blame)
    say(f"integration check failed; attributed ({blame.checks_run} re-checks): "
        f"{blame.blame.value} {', '.join(blame.branches)}".rstrip())
    if blame.repair is not None:
        snapshot, _ = read_task_state(layout, blame.repair, now=utc_now())
        left = snapshot.repairs_requested < max_repairs_of(snapshot, context.settings.max_repairs)
        if left and request_round(layout, snapshot, failure, integration=True) is not None:
            say(f"{blame.repair}: repair round for the integration failure")
            return [blame.repair]
        say(f"{blame.repair}: no repair rounds left")
        return []
    if blame.blame == Blame.COMBINATION:
        fixer = fix_integration_task(layout, url, failure, blame.branches)
        report.fixers.append(fixer.id)
        say(f"only the combination fails: {fixer.id} works on {DEFAULT_INTEGRATION_BRANCH}")
        return [fixer.id]
    return []


def _resolve_conflicts(
    context: SpawnContext, url: str, report: LoopReport, ids: list[str], max_workers: int, say: Say
) -> bool:
    """Resolvers for the conflicts of the last merge (one per task); True when any ran."""
    layout = context.settings.layout
    fresh = []
    for task in report.merge.with_outcome(MergeOutcome.CONFLICT):
        if task.task_id in report.resolvers:
            continue
        made = resolver_for(layout, url, report.merge, task.task_id)
        report.resolvers[task.task_id] = made.id
        say(f"{task.task_id}: conflict in {', '.join(task.files)}; resolver {made.id}")
        fresh.append(made.id)
    if not fresh:
        return False
    _run_scope(context, fresh, max_workers)
    for conflicting, resolver in report.resolvers.items():
        if resolver in fresh and _succeeded(layout, resolver):
            if conflicting in ids:  # its commit comes in with the resolver's merge
                ids.remove(conflicting)
            ids.append(resolver)
            report.repaired.append(f"{conflicting}: conflict resolved by {resolver}")
    return True


def close_the_loop(
    context: SpawnContext, url: str, base: str, task_ids: list[str], *,
    max_workers: int = 4, say: Say = lambda _line: None,
) -> tuple[LoopReport, Path]:
    """Merge, resolve conflicts, check the integration branch, send failures back; the report
    and the last merge's clone (the caller removes its parent)."""
    layout = context.settings.layout
    ids = list(task_ids)
    merge, clone = integrate(layout, url, ids, base)
    report = LoopReport(merge)
    for _ in range(context.settings.max_repairs + len(ids) + 1):
        if _resolve_conflicts(context, url, report, ids, max_workers, say):
            shutil.rmtree(clone.parent, ignore_errors=True)
            report.merge, clone = integrate(layout, url, ids, base)
            continue
        report.check = check_tasks(context, [integration_target(layout, url)])[0]
        failure = report.check.outcome
        if report.check.passed or failure is None:
            return report, clone
        again = send_back(context, url, base, report, failure, say)
        if not again:
            return report, clone
        _run_scope(context, again, max_workers)
        for task_id in again:
            if _succeeded(layout, task_id):
                if task_id not in ids:
                    ids.append(task_id)
                report.repaired.append(f"{task_id}: repaired after the integration check failed")
        shutil.rmtree(clone.parent, ignore_errors=True)
        report.merge, clone = integrate(layout, url, ids, base)
    return report, clone
