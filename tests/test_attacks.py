"""A hostile agent against the trusted parts: the worker runtime's git, the worker container, the
gateway. Each test is one attack that once worked; the ones marked ``xfail(strict=True)`` still
work and say what the fix is."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.gitrepo import git, make_remote
from worker import repo
from worker.errors import WorkerError

GITLINK = "1234567890123456789012345678901234567890"


def _workspace_with_submodule(tmp_path: Path) -> repo.Workspace:
    """The runtime's clone of a repository whose tree has a submodule at ``sub`` (not checked
    out, as in every worker's clone)."""
    remote = make_remote(tmp_path)
    seed = tmp_path / "seed"
    git("update-index", "--add", "--cacheinfo", f"160000,{GITLINK},sub", cwd=seed)
    git("-c", "user.name=a", "-c", "user.email=b@c", "commit", "-qm", "submodule", cwd=seed)
    git("push", "-q", str(remote), "main", cwd=seed)
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--bare", str(remote), str(mirror))
    workspace = repo.Workspace(private=tmp_path / "private", agent_root=tmp_path / "agent")
    workspace.private.mkdir()
    workspace.agent_root.mkdir()
    repo.prepare(workspace, mirror, str(remote), None, "t1", None)
    return workspace


def test_a_repository_planted_at_a_submodule_path_runs_no_code_in_the_runtime(
    tmp_path: Path,
) -> None:
    """The agent turns the (empty) submodule directory into a repository of its own, with a
    clean filter in its config. ``git add --all`` in the runtime's repository runs ``git
    status`` in a submodule whose HEAD matches the gitlink, which loads that config and runs the
    filter: as root, with DAC_OVERRIDE, in a worker container."""
    workspace = _workspace_with_submodule(tmp_path)
    base = git("rev-parse", "HEAD", cwd=workspace.work_tree).strip()
    marker = tmp_path / "PWNED"
    sub = workspace.work_tree / "sub"
    git("init", "-q", str(sub))
    (sub / "f").write_text("x\n")
    git("add", "f", cwd=sub)
    (sub / ".gitattributes").write_text("* filter=evil\n")
    git("config", "filter.evil.clean", f"touch {marker}; cat", cwd=sub)
    (sub / ".git" / "HEAD").write_text(GITLINK + "\n")
    time.sleep(1.1)  # the index entry of f goes stale, so status must hash f again
    (sub / "f").write_text("y\n")

    with pytest.raises(WorkerError, match="nested git repository at sub"):
        repo.check_work_tree(workspace, repo.Limits())
        repo.commit_all(workspace, "m", base)
    assert not marker.exists(), "the runtime ran the agent's filter"


def test_a_git_file_pointing_elsewhere_is_refused_too(tmp_path: Path) -> None:
    """A ``.git`` file (``gitdir: ...``) in a subdirectory makes git read another repository."""
    workspace = _workspace_with_submodule(tmp_path)
    elsewhere = tmp_path / "elsewhere.git"
    git("init", "-q", "--bare", str(elsewhere))
    (workspace.work_tree / "other").mkdir()
    (workspace.work_tree / "other" / ".git").write_text(f"gitdir: {elsewhere}\n")
    with pytest.raises(WorkerError, match="nested git repository at other"):
        repo.check_work_tree(workspace, repo.Limits())


def test_an_untouched_submodule_directory_is_fine(tmp_path: Path) -> None:
    workspace = _workspace_with_submodule(tmp_path)
    (workspace.work_tree / "new.txt").write_text("new\n")
    repo.check_work_tree(workspace, repo.Limits())
    base = git("rev-parse", "HEAD", cwd=workspace.work_tree).strip()
    summary = repo.commit_all(workspace, "m", base)
    assert summary.files_changed == ["new.txt"]
