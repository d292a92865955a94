"""Checkpoints for crash resume: the work tree as a work-in-progress commit on
``orchestrator/<id>.wip`` in the volume's mirror, restored by the next attempt.

Every git command is the runtime's (``repo.git`` with ``Workspace.env``: a private ``GIT_DIR``,
the runtime's own config, hooks and fsmonitor off), with an index of its own
(``GIT_INDEX_FILE`` in the private directory) so the runtime's index is not touched. A WIP
commit's parent is the previous WIP commit, the first's the attempt's base commit; the task's
branch never holds one: the final commit is made by ``repo.commit_all`` from the base commit and
the tree as it is then (one commit), and :func:`drop_checkpoint` deletes the WIP branch after
the task's branch is pushed. Before each checkpoint the tree is checked as for the final commit
(``repo.check_work_tree``: sizes, links, nested repositories). While the agent runs it can still
change files between that check and ``git add``; nothing git runs in that window executes code
(no filter driver is configured, no status recursion), so the race costs at most a large blob.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestration_protocol.mirrors import task_branch

from . import repo
from .errors import GitFailed, WorkerError
from .ownership import chown_tree

WIP_SUFFIX = ".wip"
CHECKPOINT_INTERVAL_S = 30.0
"""At least this often a changed tree is checkpointed while the agent runs."""
MIN_GAP_S = 2.0
"""Checkpoints asked for sooner than this after the last one wait (a burst of turns)."""
_WIP_REF = "refs/orchestrator/wip"


def wip_branch(task_id: str) -> str:
    """The WIP branch of a task: ``orchestrator/<id>.wip``."""
    return f"{task_branch(task_id)}{WIP_SUFFIX}"


@dataclass(frozen=True)
class Checkpoint:
    """A pushed WIP commit."""

    commit: str
    """The WIP commit."""
    tree: str
    """Its tree (equal trees are not committed again)."""
    pushed: bool
    """Whether it reached the mirror."""
    problem: str | None = None
    """Why not, when it did not."""


def _wip_env(workspace: repo.Workspace) -> dict[str, str]:
    return {**workspace.env(), "GIT_INDEX_FILE": str(workspace.private / "wip.index")}


def write_checkpoint(
    workspace: repo.Workspace,
    mirror: Path,
    task_id: str,
    parent: str,
    limits: repo.Limits,
    previous: Checkpoint | None = None,
) -> Checkpoint | None:
    """Commit the work tree as a WIP commit (on top of ``previous``, else ``parent``) and push it
    to ``orchestrator/<id>.wip``; None when the tree is as ``previous`` left it."""
    repo.check_work_tree(workspace, limits)
    env = _wip_env(workspace)
    repo.git(["add", "--all"], env)
    tree = repo.git(["write-tree"], env).strip()
    if previous is not None and previous.tree == tree:
        return None
    base = previous.commit if previous is not None else parent
    message = f"{task_id}: work in progress (checkpoint)"
    commit = repo.git(["commit-tree", tree, "-p", base, "-m", message], env).strip()
    branch = wip_branch(task_id)
    repo.git(["update-ref", f"refs/heads/{branch}", commit], env)
    problem = repo.push_to_mirror(workspace, mirror, branch)
    return Checkpoint(commit=commit, tree=tree, pushed=problem is None, problem=problem)


def restore_checkpoint(
    workspace: repo.Workspace,
    mirror: Path,
    task_id: str,
    base: str,
    owner: tuple[int, int] | None = None,
) -> tuple[str | None, str | None]:
    """Put the task's last checkpoint into the fresh work tree (files the agent may change, its
    own ``.git`` left at the base commit); ``(commit, None)``, or ``(None, why not)``."""
    env = workspace.env()
    branch = wip_branch(task_id)
    try:
        repo.git(["fetch", "--quiet", "--no-tags", str(mirror), f"+refs/heads/{branch}:{_WIP_REF}"], env)
    except GitFailed:
        return None, f"no checkpoint of task {task_id} in the mirror ({branch})"
    commit = repo.git(["rev-parse", "--verify", f"{_WIP_REF}^{{commit}}"], env).strip()
    if commit == base or repo.git(["merge-base", base, commit], env, check=False).strip() != base:
        return None, f"the checkpoint {commit[:12]} does not build on this attempt's base {base[:12]}"
    repo.git(["read-tree", "--reset", "-u", commit], env)
    repo.git(["read-tree", base], env)  # the runtime's index back at the base: commit_all adds all
    if owner is not None:
        chown_tree(workspace.work_tree, owner)  # files the runtime wrote go to the agent
    return commit, None


def drop_checkpoint(workspace: repo.Workspace, mirror: Path, task_id: str) -> str | None:
    """Delete the task's WIP branch from the mirror (after the final push); None, or why not."""
    try:
        repo.git(["push", "--quiet", str(mirror), f":refs/heads/{wip_branch(task_id)}"],
                 workspace.env(work_tree=False))
    except GitFailed as error:
        return str(error)
    return None


class Checkpointer(threading.Thread):
    """Checkpoints the tree while the agent runs: when :meth:`poke` is called (the agent
    finished a turn) and at least every ``interval_s`` while the tree changes."""

    def __init__(
        self,
        write: Callable[[Checkpoint | None], Checkpoint | None],
        interval_s: float = CHECKPOINT_INTERVAL_S,
        on_problem: Callable[[str], None] = lambda message: None,
    ) -> None:
        super().__init__(name="checkpoint", daemon=True)
        self.write, self.interval_s, self.on_problem = write, interval_s, on_problem
        self.last: Checkpoint | None = None
        self.count = 0
        self._wake, self._done = threading.Event(), threading.Event()
        self._lock = threading.Lock()

    def poke(self) -> None:
        """Ask for a checkpoint soon (the agent finished a turn)."""
        self._wake.set()

    def run(self) -> None:
        last_at = 0.0
        while not self._done.is_set():
            self._wake.wait(self.interval_s)
            if self._done.is_set():
                break
            wait = MIN_GAP_S - (time.monotonic() - last_at)
            if wait > 0 and self._done.wait(wait):
                break
            self._wake.clear()
            self.checkpoint_now()
            last_at = time.monotonic()

    def checkpoint_now(self) -> Checkpoint | None:
        """Checkpoint at once (also from the runtime, e.g. after the agent ended)."""
        with self._lock:
            try:
                made = self.write(self.last)
            except (WorkerError, OSError) as error:
                self.on_problem(f"checkpoint not written: {error}")
                return None
            if made is not None:
                self.last, self.count = made, self.count + 1
                if made.problem:
                    self.on_problem(f"checkpoint not pushed: {made.problem}")
            return made

    def stop(self) -> None:
        """End the thread (the last checkpoint stays)."""
        self._done.set()
        self._wake.set()
        self.join(timeout=30)
