"""A resolver's git: the conflicting branch merged into the clone with markers left for the agent,
and a resolution judged by git state, never by what the agent says.

:func:`start_merge` runs ``git merge --no-commit`` in the runtime's private repository over the
agent's fresh work tree (the runtime's config defines no merge driver or filter, so nothing of
the repository runs) and returns the conflicted files. After the agent, :func:`conflict_markers`
lists the files that still hold markers (read without following links, within the size limit),
and :func:`commit_merge` records the merge commit with both parents on the task's branch.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from . import repo
from .errors import GitFailed, WorkTreeRefused
from .ownership import chown_tree

MARKERS = (b"<<<<<<< ", b">>>>>>> ")
"""Line starts that show an unresolved conflict (``=======`` alone is too common to count)."""
_MERGE_REF = "refs/orchestrator/merging"


def start_merge(
    workspace: repo.Workspace, mirror: Path, merge_branch: str, owner: tuple[int, int] | None
) -> list[str]:
    """Merge ``merge_branch`` of the mirror into the work tree without committing; the files
    left in conflict (empty when it merged cleanly)."""
    env = workspace.env()
    try:
        repo.git(["fetch", "--quiet", "--no-tags", str(mirror),
                  f"+refs/heads/{merge_branch}:{_MERGE_REF}"], env)
    except GitFailed as error:
        raise GitFailed(
            f"The branch {merge_branch!r} to resolve is not in the volume's mirror ({error}); "
            "merge only branches that were pushed."
        ) from error
    repo.git(["merge", "--no-commit", "--no-ff", "--quiet", _MERGE_REF], env, check=False)
    conflicted = repo.git(["diff", "--name-only", "--diff-filter=U", "-z"], env)
    if owner is not None:
        chown_tree(workspace.work_tree, owner)  # the merged files go to the agent
    return [path for path in conflicted.split("\0") if path]


def _has_marker(path: Path, limit: int) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return False
        data = handle.read(limit)
    return any(line.startswith(MARKERS) for line in data.splitlines())


def conflict_markers(workspace: repo.Workspace, limits: repo.Limits) -> list[str]:
    """The files of the work tree that still hold conflict markers."""
    repo.check_work_tree(workspace, limits)
    env = workspace.env()
    listing = repo.git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], env)
    root = workspace.work_tree
    return sorted(
        path for path in {p for p in listing.split("\0") if p}
        if _has_marker(root / path, limits.max_file_bytes)
    )


def commit_merge(workspace: repo.Workspace, branch: str, message: str, limits: repo.Limits) -> str:
    """Record the resolved merge on ``branch``: a commit whose parents are the branch's head and
    the merged branch; :class:`WorkTreeRefused` when markers are left."""
    left = conflict_markers(workspace, limits)
    if left:
        raise WorkTreeRefused(
            f"Conflict markers are left in {', '.join(left[:5])}; the merge was not recorded."
        )
    env = workspace.env()
    repo.git(["add", "--all"], env)
    tree = repo.git(["write-tree"], env).strip()
    ours = repo.git(["rev-parse", f"refs/heads/{branch}"], env).strip()
    theirs = repo.git(["rev-parse", _MERGE_REF], env).strip()
    commit = repo.git(["commit-tree", tree, "-p", ours, "-p", theirs, "-m", message], env).strip()
    repo.git(["update-ref", f"refs/heads/{branch}", commit, ours], env)
    repo.git(["merge", "--quit"], env, check=False)
    return commit


def parents_of(workspace: repo.Workspace, commit: str) -> list[str]:
    """The parents of ``commit``."""
    line = repo.git(["rev-list", "--parents", "-n", "1", commit], workspace.env()).split()
    return line[1:]
