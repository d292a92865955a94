"""Bring the workers' branches together: one integration branch in the manager's clone.

For each chosen task that succeeded, :func:`merge_tasks` finds the commit its result names (on
the task's branch ``orchestrator/<id>`` in the volume's mirror of its repository, where workers
push it; else on ``origin``; else in ``results/<id>/changes.bundle``), and merges it with ``--no-ff`` into the
integration branch, dependencies first. A conflict stops that task's merge cleanly
(``git merge --abort``) and is reported with its files; the other tasks stay merged. Results are
untrusted input: branch names and commits from them are checked before git sees them.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestration_protocol import (
    Layout,
    Result,
    Task,
    TaskKind,
    TaskSnapshot,
    TaskState,
    read_board,
)
from orchestration_protocol.docstrings import describe_fields
from orchestration_protocol.mirrors import mirror_dir, task_ref
from orchestration_protocol.tree_limits import change_limits, change_problem

from ..errors import BadInput, BranchMissing, ManagerError, TaskUnknown
from .access import GitAccess, git_access
from .mirror import is_mirror

DEFAULT_INTEGRATION_BRANCH = "orchestrator/integration"
TASK_BRANCH_PREFIX = "orchestrator/"
FULL_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
FALLBACK_IDENTITY = (
    "-c",
    "user.name=Claude Orchestrator",
    "-c",
    "user.email=orchestrator@claude-orchestrator.invalid",
)


class NotAGitRepository(ManagerError, ValueError):
    """The directory to merge in is not a git work tree."""


class WorkTreeDirty(ManagerError, RuntimeError):
    """The manager's clone has uncommitted changes to tracked files."""


class MergeOutcome(StrEnum):
    """What happened to one task's branch."""

    MERGED = "merged"
    """Its commit is now part of the integration branch (a new merge commit)."""
    ALREADY_MERGED = "already_merged"
    """The integration branch already held its commit."""
    CONFLICT = "conflict"
    """Its changes collide with what was merged before; the merge was aborted."""
    SKIPPED = "skipped"
    """Not merged: not succeeded, no changes, a dependency not merged, or the commit not found."""
    FAILED = "failed"
    """git refused the merge for another reason (see ``reason``); nothing was changed."""


class TaskMerge(BaseModel):
    """The outcome for one task."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True)

    task_id: str
    """The task."""
    outcome: MergeOutcome
    """merged, already_merged, conflict, skipped or failed."""
    branch: str | None = None
    """The task's branch, as its result names it."""
    commit: str | None = None
    """The task's head commit that was (or would have been) merged."""
    source: str | None = None
    """Where the commit came from: ``mirror`` (the task's branch in the volume's mirror of its
    repository), ``origin``, or the path of ``changes.bundle``."""
    files: list[str] = []
    """For a merge, the files the task changed; for a conflict, the files in conflict."""
    reason: str | None = None
    """Why it was skipped, or what git said, in one sentence."""


class MergeReport(BaseModel):
    """What :func:`merge_tasks` did, task by task."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True)

    integration_branch: str
    """The branch the tasks were merged into."""
    repo_dir: str
    """The clone the merge happened in."""
    base_commit: str
    """The integration branch's commit before this merge."""
    head_commit: str
    """The integration branch's commit after it."""
    tasks: list[TaskMerge] = []
    """One entry per chosen task, in the order they were merged."""
    pushed: bool = False
    """Whether the integration branch reached origin."""
    push_error: str | None = None
    """Why it did not, when a push was asked for."""

    def with_outcome(self, *outcomes: MergeOutcome) -> list[TaskMerge]:
        return [task for task in self.tasks if task.outcome in outcomes]

    @property
    def ok(self) -> bool:
        """True when no task hit a conflict or a git failure."""
        return not self.with_outcome(MergeOutcome.CONFLICT, MergeOutcome.FAILED)

    def describe(self) -> str:
        """The report as lines a person reads."""
        lines = [f"Integration branch {self.integration_branch} in {self.repo_dir}:"]
        for task in self.tasks:
            detail = ", ".join(task.files) if task.files else ""
            if task.outcome == MergeOutcome.CONFLICT:
                detail = f"conflict in {detail or 'unknown files'}"
            elif task.reason:
                detail = task.reason
            lines.append(
                f"  {task.task_id}: {task.outcome.value}" + (f" ({detail})" if detail else "")
            )
        if self.push_error:
            lines.append(f"  not pushed: {self.push_error}")
        elif self.pushed:
            lines.append(f"  pushed to origin/{self.integration_branch}")
        return "\n".join(lines)


class _Git:
    """git in one work tree with the manager's credentials, never prompting."""

    def __init__(self, repo_dir: Path, access: GitAccess) -> None:
        self.repo_dir = repo_dir
        self.access = access

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.access.run(*args, cwd=self.repo_dir)

    def out(self, *args: str) -> str:
        done = self.run(*args)
        if done.returncode != 0:
            raise ManagerError(f"git {args[0]} failed in {self.repo_dir}: {self.said(done)}")
        return done.stdout.strip()

    def said(self, done: subprocess.CompletedProcess[str]) -> str:
        """What git printed, on one line, credentials hidden."""
        text = " ".join((done.stderr or done.stdout or "").split())
        return self.access.redact(text[:400]) if text else f"exit code {done.returncode}"

    def ok(self, *args: str) -> bool:
        return self.run(*args).returncode == 0

    def has_commit(self, commit: str) -> bool:
        return self.ok("cat-file", "-e", f"{commit}^{{commit}}")

    def identity(self) -> tuple[str, ...]:
        """``-c user.*`` options when no committer identity is configured."""
        configured = self.ok("config", "user.email") or "GIT_COMMITTER_EMAIL" in os.environ
        return () if configured else FALLBACK_IDENTITY


def merge_tasks(
    layout: Layout,
    repo_dir: Path,
    task_ids: list[str] | None,
    *,
    integration_branch: str = DEFAULT_INTEGRATION_BRANCH,
    push: bool = False,
    repo_url: str | None = None,
    credentials: Mapping[str, str] | None = None,
) -> MergeReport:
    """Merge the branches of ``task_ids`` (None: every task on the volume) into
    ``integration_branch`` in ``repo_dir``, dependencies first; leave it checked out there.
    Task branches come from the volume's mirror of each task's repository (``repo_url``, else
    the clone's ``origin``, for tasks that name none); fetch and push use ``credentials``."""
    with git_access(credentials or {}) as access:
        git = _open_clone(repo_dir, access)
        return _merge(git, layout, task_ids, integration_branch, push, repo_url)


def _merge(
    git: _Git,
    layout: Layout,
    task_ids: list[str] | None,
    integration_branch: str,
    push: bool,
    repo_url: str | None,
) -> MergeReport:
    _check_branch_name(git, integration_branch)
    board = read_board(layout)
    chosen = _choose(board.snapshots, task_ids)
    states = board.states(now=datetime.now(UTC))
    git.run("fetch", "--quiet", "origin", "+refs/heads/*:refs/remotes/origin/*")
    sources = _Sources(
        git, layout, repo_url or git.run("remote", "get-url", "origin").stdout.strip()
    )
    base = _checkout_integration(git, integration_branch)
    report = MergeReport(
        integration_branch=integration_branch,
        repo_dir=str(git.repo_dir.resolve()),
        base_commit=base,
        head_commit=base,
    )
    not_merged: set[str] = set()
    for task_id in _dependency_order(chosen, board.snapshots):
        snapshot = board.snapshots[task_id]
        outcome = _merge_one(sources, snapshot.task, snapshot.result, states[task_id], not_merged)
        if outcome.outcome not in (MergeOutcome.MERGED, MergeOutcome.ALREADY_MERGED):
            not_merged.add(task_id)
        report.tasks.append(outcome)
    report.head_commit = git.out("rev-parse", "HEAD")
    if push:
        report.push_error = _push(git, integration_branch)
        report.pushed = report.push_error is None
    return report


def _open_clone(repo_dir: Path, access: GitAccess) -> _Git:
    git = _Git(repo_dir, access)
    if (
        not repo_dir.is_dir()
        or git.run("rev-parse", "--is-inside-work-tree").stdout.strip() != "true"
    ):
        raise NotAGitRepository(
            f"{repo_dir} is not a git work tree; run merge in the manager's clone (or pass --repo-dir)."
        )
    if git.out("status", "--porcelain", "--untracked-files=no"):
        raise WorkTreeDirty(
            f"{repo_dir} has uncommitted changes; commit or stash them before merging."
        )
    return git


def _check_branch_name(git: _Git, branch: str) -> None:
    if branch.startswith("-") or not git.ok("check-ref-format", "--branch", branch):
        raise BadInput(f"{branch!r} is not a valid branch name; choose another integration branch.")


def _choose(snapshots: dict[str, TaskSnapshot], task_ids: list[str] | None) -> list[str]:
    if task_ids is None:
        return list(snapshots)
    unknown = [task_id for task_id in task_ids if task_id not in snapshots]
    if unknown:
        raise TaskUnknown(
            f"No task {', '.join(unknown)} on the volume; see `orchestrator status` for the ids."
        )
    return list(dict.fromkeys(task_ids))


def _dependency_order(task_ids: Iterable[str], snapshots: dict[str, TaskSnapshot]) -> list[str]:
    """``task_ids`` with each task after the chosen tasks it depends on (cycles: as given)."""
    chosen = list(task_ids)
    wanted, ordered, visiting = set(chosen), [], set()

    def visit(task_id: str) -> None:
        if task_id in ordered or task_id in visiting:
            return
        visiting.add(task_id)
        task = snapshots[task_id].task
        for dep in task.depends_on if task else []:
            if dep in wanted:
                visit(dep)
        visiting.discard(task_id)
        ordered.append(task_id)

    for task_id in chosen:
        visit(task_id)
    return ordered


def _checkout_integration(git: _Git, branch: str) -> str:
    """Check out ``branch``: the local one, else origin's, else a new one at HEAD."""
    if git.ok("show-ref", "--verify", "--quiet", f"refs/heads/{branch}"):
        git.out("checkout", "--quiet", branch)
    elif git.ok("show-ref", "--verify", "--quiet", f"refs/remotes/origin/{branch}"):
        git.out("checkout", "--quiet", "-b", branch, f"refs/remotes/origin/{branch}")
    elif not git.ok("rev-parse", "--verify", "--quiet", "HEAD^{commit}"):
        raise BranchMissing(
            f"{git.repo_dir} has no commit checked out (an empty repository, or its remote's "
            "HEAD names a branch that does not exist); check out a branch there first "
            "(git checkout NAME), or clone with --branch NAME."
        )
    else:
        git.out("checkout", "--quiet", "-b", branch)
    return git.out("rev-parse", "HEAD")


def _merge_one(
    sources: _Sources,
    task: Task | None,
    result: Result | None,
    state: TaskState,
    not_merged: set[str],
) -> TaskMerge:
    if task is not None and task.kind == TaskKind.PLAN:
        return _skipped(task, result, "it is a planning task (its plan is in its result)")
    if task is None or result is None or state != TaskState.SUCCESS:
        return _skipped(task, result, f"its state is {state.value}, not success")
    blocked_by = [dep for dep in task.depends_on if dep in not_merged]
    if blocked_by:
        return _skipped(
            task, result, f"it depends on {', '.join(blocked_by)}, which was not merged"
        )
    commit = result.head_commit
    if not commit or commit == result.base_commit or not result.files_changed:
        return _skipped(task, result, "it changed no files")
    if not FULL_COMMIT.match(commit):
        return _skipped(task, result, f"its result names {commit!r}, which is not a full commit id")
    source = sources.find(task, commit)
    if source is None:
        return _skipped(
            task,
            result,
            "its commit is not in the mirror, on origin or in results/<id>/changes.bundle",
        )
    if too_big := change_problem(["git", "-C", str(sources.git.repo_dir)], result.base_commit, commit, change_limits()):
        return _skipped(task, result, f"its change is refused before it is written: {too_big}")
    found = TaskMerge(
        task_id=task.id,
        outcome=MergeOutcome.MERGED,
        branch=result.branch,
        commit=commit,
        source=source,
        files=list(result.files_changed),
    )
    if sources.git.ok("merge-base", "--is-ancestor", commit, "HEAD"):
        return found.model_copy(update={"outcome": MergeOutcome.ALREADY_MERGED})
    return _merge_commit(sources.git, task, found)


def _skipped(task: Task | None, result: Result | None, reason: str) -> TaskMerge:
    task_id = task.id if task else (result.task_id if result else "?")
    return TaskMerge(
        task_id=task_id,
        outcome=MergeOutcome.SKIPPED,
        branch=result.branch if result else None,
        commit=result.head_commit if result else None,
        reason=reason,
    )


@dataclass
class _Sources:
    """Where task commits come from: the volume's mirrors, origin, the tasks' bundles."""

    git: _Git
    layout: Layout
    default_url: str | None
    """The repository of tasks that name none."""

    def find(self, task: Task, commit: str) -> str | None:
        """Make ``commit`` present in the clone; say where it came from (None: nowhere)."""
        if self._from_mirror(task, commit):
            return "mirror"
        if self.git.has_commit(commit):
            return "origin"
        return self._from_bundle(task.id, commit)

    def _from_mirror(self, task: Task, commit: str) -> bool:
        """Fetch the task's branch from its mirror into ``refs/remotes/mirror/orchestrator/<id>``
        when that branch holds ``commit``."""
        url = task.repo or self.default_url
        mirror = mirror_dir(self.layout, url) if url else None
        if mirror is None or not is_mirror(mirror):
            return False
        ref = task_ref(task.id)
        in_mirror = self.git.access.run(
            f"--git-dir={mirror}", "merge-base", "--is-ancestor", commit, ref
        )
        if in_mirror.returncode != 0:
            return False
        local = f"refs/remotes/mirror/{ref.removeprefix('refs/heads/')}"
        self.git.run("fetch", "--quiet", "--no-tags", str(mirror.resolve()), f"+{ref}:{local}")
        return self.git.has_commit(commit)

    def _from_bundle(self, task_id: str, commit: str) -> str | None:
        bundle = self.layout.artifacts_dir(task_id) / "changes.bundle"
        if bundle.is_symlink() or not bundle.is_file():
            return None
        self.git.run(
            "fetch",
            "--quiet",
            str(bundle.resolve()),
            f"+refs/*:refs/orchestrator/bundles/{task_id}/*",
        )
        return str(bundle) if self.git.has_commit(commit) else None


def _merge_commit(git: _Git, task: Task, found: TaskMerge) -> TaskMerge:
    title = task.prompt.strip().splitlines()[0][:72] if task.prompt.strip() else task.id
    message = f"Merge task {task.id}: {title}"
    done = git.run(
        *git.identity(), "merge", "--no-ff", "--no-edit", "-m", message, found.commit or ""
    )
    if done.returncode == 0:
        return found
    conflicted = git.run("diff", "--name-only", "--diff-filter=U").stdout.split()
    in_merge = git.ok("rev-parse", "--verify", "--quiet", "MERGE_HEAD")
    if in_merge:
        git.run("merge", "--abort")
    if conflicted:
        return found.model_copy(
            update={
                "outcome": MergeOutcome.CONFLICT,
                "files": conflicted,
                "reason": f"conflicts with earlier changes in {', '.join(conflicted)}",
            }
        )
    return found.model_copy(
        update={"outcome": MergeOutcome.FAILED, "files": [], "reason": git.said(done)}
    )


def _push(git: _Git, branch: str) -> str | None:
    done = git.run("push", "--quiet", "origin", f"refs/heads/{branch}:refs/heads/{branch}")
    return None if done.returncode == 0 else f"git push failed: {git.said(done)}"
