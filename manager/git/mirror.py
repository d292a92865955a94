"""The manager's mirror of each task repository on the volume, and pushing task branches out.

:func:`ensure_mirror` makes ``git/<name>-<hash>.git`` (a bare clone) the first time and refreshes
it later, with the manager's own credentials; workers clone from it without network or
credential and push ``refs/heads/orchestrator/<id>`` into it, which a refresh never touches.
:func:`push_task_branches` (``orchestrator push``) takes those branches to the real remote.
A lock file beside each mirror keeps two commands from refreshing it at once.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict

from orchestration_protocol import Layout, Task, read_board
from orchestration_protocol.docstrings import describe_fields
from orchestration_protocol.mirrors import (
    TASK_BRANCH_PREFIX,
    mirror_dir,
    mirror_lock_file,
    task_branch,
    task_ref,
)

from ..errors import BranchMissing, MirrorUnavailable, TaskUnknown
from .access import GitAccess, git_access, redact_url, strip_credentials

LOCK_TIMEOUT_S = 900.0
REFRESH_REFSPECS = ("+refs/heads/*:refs/heads/*", f"^refs/heads/{TASK_BRANCH_PREFIX}*")
"""Every branch of the remote, except the ones workers push into the mirror."""
CREDENTIALS_FIX = "check the URL and the manager's GIT_SSH_KEY or GIT_TOKEN"


def is_mirror(path: Path) -> bool:
    """True when ``path`` is a bare repository (not a symlink to one)."""
    return (
        path.is_dir()
        and not path.is_symlink()
        and (path / "HEAD").is_file()
        and (path / "objects").is_dir()
    )


def ensure_mirror(layout: Layout, url: str, *, credentials: Mapping[str, str]) -> Path:
    """Make the mirror of ``url`` (``git clone --bare``) or refresh it (``git fetch``, leaving
    ``orchestrator/*`` alone); return its path. Raises MirrorUnavailable (one sentence)."""
    target = mirror_dir(layout, url)
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    lock = FileLock(str(mirror_lock_file(layout, url)), mode=0o644)
    try:
        lock.acquire(timeout=LOCK_TIMEOUT_S)
    except Timeout:
        raise MirrorUnavailable(
            f"Another command has been refreshing the mirror of {redact_url(url)} for "
            f"{LOCK_TIMEOUT_S:g} s; wait for it to finish and try again."
        ) from None
    try:
        with git_access(credentials) as access:
            if is_mirror(target):
                _refresh(access, url, target)
            else:
                _create(access, url, target)
    finally:
        lock.release()  # the file stays: unlinking lock files races with other lockers
    return target


def _create(access: GitAccess, url: str, target: Path) -> None:
    """Clone into a hidden temporary directory, then rename: a worker never sees half a mirror."""
    if target.exists() or target.is_symlink():
        raise MirrorUnavailable(
            f"{target} is in the way of the mirror of {redact_url(url)} but is not a bare git "
            "repository; remove it and try again."
        )
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    done = access.run("clone", "--bare", "--quiet", "--", url, str(temp))
    if done.returncode != 0:
        shutil.rmtree(temp, ignore_errors=True)
        raise MirrorUnavailable(
            f"Could not mirror {redact_url(url)} ({access.said(done)}); {CREDENTIALS_FIX}."
        )
    # The volume is readable by workers: no user:password@ from the URL stays in its config.
    access.run(f"--git-dir={temp}", "config", "remote.origin.url", strip_credentials(url))
    os.rename(temp, target)


def _refresh(access: GitAccess, url: str, target: Path) -> None:
    done = access.run(
        f"--git-dir={target}",
        "fetch",
        "--quiet",
        "--prune",
        "--no-tags",
        "--no-write-fetch-head",
        "--",
        url,
        *REFRESH_REFSPECS,
    )
    if done.returncode != 0:
        raise MirrorUnavailable(
            f"Could not refresh the mirror of {redact_url(url)} ({access.said(done)}); "
            f"{CREDENTIALS_FIX}."
        )


def mirror_commit(mirror: Path, ref: str) -> str | None:
    """The commit ``ref`` names in ``mirror``, or None when the mirror or the ref is missing."""
    if not is_mirror(mirror):
        return None
    done = GitAccess(mirror, {}).run(
        f"--git-dir={mirror}", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"
    )
    return done.stdout.strip() if done.returncode == 0 else None


def require_base(mirror: Path, url: str, branch: str | None) -> str:
    """The commit a task of ``url`` starts from: ``branch``, else the repository's HEAD.
    BranchMissing in one sentence naming ``--branch`` and the branches there are, so the task
    fails before any container starts."""
    commit = mirror_commit(mirror, f"refs/heads/{branch}" if branch else "HEAD")
    if commit is not None:
        return commit
    done = GitAccess(mirror, {}).run(
        f"--git-dir={mirror}", "for-each-ref", "--format=%(refname:short)", "refs/heads/"
    )
    names = [n for n in done.stdout.split() if not n.startswith(TASK_BRANCH_PREFIX)]
    choices = f"one of: {', '.join(names[:8])}" if names else "none: the repository is empty"
    if branch:
        raise BranchMissing(
            f"Branch {branch!r} does not exist in {redact_url(url)}; pass --branch with a branch "
            f"that exists ({choices})."
        )
    head = GitAccess(mirror, {}).run(f"--git-dir={mirror}", "symbolic-ref", "--quiet", "HEAD")
    named = head.stdout.strip().removeprefix("refs/heads/") or "nothing"
    raise BranchMissing(
        f"The default branch of {redact_url(url)} ({named}) does not exist; pass --branch with a "
        f"branch that exists ({choices})."
    )


# --- orchestrator push ------------------------------------------------------------------------


class PushOutcome(StrEnum):
    """What happened to one task's branch."""

    PUSHED = "pushed"
    """The remote now has ``orchestrator/<id>`` at the mirror's commit."""
    NOT_FOUND = "not_found"
    """The mirror holds no branch for the task (it pushed nothing, or names no repository)."""
    REFUSED = "refused"
    """The remote (or the network, or the credentials) refused the push; see ``reason``."""


class BranchPush(BaseModel):
    """The outcome for one task."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True)

    task_id: str
    """The task."""
    outcome: PushOutcome
    """pushed, not_found or refused."""
    branch: str
    """The branch, ``orchestrator/<id>``, in the mirror and on the remote."""
    remote: str | None = None
    """The repository it went to (credentials hidden)."""
    commit: str | None = None
    """The commit the mirror's branch names."""
    message: str
    """What happened, in one sentence."""


class PushReport(BaseModel):
    """What :func:`push_task_branches` did, task by task."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True)

    tasks: list[BranchPush] = []
    """One entry per task, in id order."""

    @property
    def ok(self) -> bool:
        """True when every branch was pushed."""
        return all(task.outcome == PushOutcome.PUSHED for task in self.tasks)

    def describe(self) -> str:
        """The report as lines a person reads."""
        if not self.tasks:
            return "No task branches in the mirrors; nothing to push."
        return "\n".join(task.message for task in self.tasks)


def push_task_branches(
    layout: Layout,
    task_ids: list[str] | None,
    *,
    repo_url: str | None,
    credentials: Mapping[str, str],
) -> PushReport:
    """Push ``orchestrator/<id>`` of ``task_ids`` from their mirrors to their remotes (None:
    every task whose branch is in its mirror). ``repo_url`` serves tasks that name no repo."""
    tasks = {task_id: snapshot.task for task_id, snapshot in read_board(layout).snapshots.items()}
    if task_ids is not None:
        unknown = [task_id for task_id in task_ids if task_id not in tasks]
        if unknown:
            raise TaskUnknown(
                f"No task {', '.join(unknown)} on the volume; see `orchestrator status` for the ids."
            )
    chosen = sorted(dict.fromkeys(task_ids)) if task_ids is not None else sorted(tasks)
    report = PushReport()
    with git_access(credentials) as access:
        for task_id in chosen:
            outcome = _push_one(access, layout, task_id, tasks[task_id], repo_url)
            if task_ids is not None or outcome.outcome != PushOutcome.NOT_FOUND:
                report.tasks.append(outcome)
    return report


def _push_one(
    access: GitAccess, layout: Layout, task_id: str, task: Task | None, repo_url: str | None
) -> BranchPush:
    branch = task_branch(task_id)
    url = (task.repo if task else None) or repo_url
    if url is None:
        return BranchPush(
            task_id=task_id,
            outcome=PushOutcome.NOT_FOUND,
            branch=branch,
            message=f"{task_id}: not found (the task names no repo and REPO_URL is not set).",
        )
    remote = redact_url(url)
    mirror = mirror_dir(layout, url)
    commit = mirror_commit(mirror, task_ref(task_id))
    found = BranchPush(
        task_id=task_id,
        outcome=PushOutcome.PUSHED,
        branch=branch,
        remote=remote,
        commit=commit,
        message=f"{task_id}: pushed {branch} ({(commit or '')[:12]}) to {remote}.",
    )
    if commit is None:
        return found.model_copy(
            update={
                "outcome": PushOutcome.NOT_FOUND,
                "message": f"{task_id}: not found ({branch} is not in the mirror of {remote}; "
                "the task has not pushed a branch).",
            }
        )
    spec = f"+{task_ref(task_id)}:{task_ref(task_id)}"
    done = access.run(f"--git-dir={mirror}", "push", "--quiet", "--", url, spec)
    if done.returncode == 0:
        return found
    return found.model_copy(
        update={
            "outcome": PushOutcome.REFUSED,
            "message": f"{task_id}: refused ({remote} did not take {branch}: "
            f"{access.said(done)}); check the manager's GIT_SSH_KEY or GIT_TOKEN and the "
            "remote's branch protection.",
        }
    )


def fast_forward_from_origin(layout: Layout, url: str, branch: str, *, credentials: Mapping[str, str]) -> bool:
    """Bring ``branch`` from ``url`` into the volume's mirror when origin has it and the mirror's
    is missing or behind (a fast-forward only: a branch the manager built in the mirror is never
    replaced by another). True when the mirror's branch moved."""
    target = mirror_dir(layout, url)
    if not is_mirror(target):
        return False
    before = mirror_commit(target, f"refs/heads/{branch}")
    with git_access(credentials) as access:
        access.run(
            f"--git-dir={target}", "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--",
            url, f"refs/heads/{branch}:refs/heads/{branch}",
        )
    return mirror_commit(target, f"refs/heads/{branch}") != before
