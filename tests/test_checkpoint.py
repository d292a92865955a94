"""Crash resume's checkpoints with real git: WIP commits pushed to ``orchestrator/<id>.wip``
in the volume's mirror, restored into the next attempt's fresh clone, and a final branch that
holds one commit on the base and no WIP commit."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from manager.git.mirror import ensure_mirror
from orchestration_protocol import Layout
from tests.gitrepo import git, make_remote
from worker import repo
from worker.checkpoint import (
    Checkpointer,
    drop_checkpoint,
    restore_checkpoint,
    wip_branch,
    write_checkpoint,
)
from worker.errors import WorkTreeRefused

LIMITS = repo.Limits()


def attempt(tmp_path: Path, mirror: Path, remote: Path, name: str) -> tuple[repo.Workspace, str]:
    workspace = repo.Workspace(private=tmp_path / name / "private", agent_root=tmp_path / name / "agent")
    workspace.private.mkdir(parents=True)
    workspace.agent_root.mkdir(parents=True)
    base, _ = repo.prepare(workspace, mirror, str(remote), None, "t1", None)
    return workspace, base


@pytest.fixture
def mirror(tmp_path: Path) -> tuple[Path, Path]:
    remote = make_remote(tmp_path)
    return ensure_mirror(Layout(tmp_path / "volume").ensure(), str(remote), credentials={}), remote


def log(mirror: Path, ref: str) -> list[str]:
    return git("log", "--format=%s", ref, cwd=mirror).splitlines()


def test_checkpoints_are_restored_and_the_final_branch_holds_no_wip(tmp_path: Path, mirror) -> None:
    mirror_dir, remote = mirror
    first, base = attempt(tmp_path, mirror_dir, remote, "one")
    (first.work_tree / "half.txt").write_text("half of the work\n")
    one = write_checkpoint(first, mirror_dir, "t1", base, LIMITS)
    assert one is not None and one.pushed
    assert write_checkpoint(first, mirror_dir, "t1", base, LIMITS, one) is None  # unchanged
    (first.work_tree / "README.md").write_text("# demo app\nedited\n")
    two = write_checkpoint(first, mirror_dir, "t1", base, LIMITS, one)
    assert two is not None and two.pushed and two.commit != one.commit
    assert log(mirror_dir, wip_branch("t1"))[:2] == ["t1: work in progress (checkpoint)"] * 2
    # the worker is killed here; the next attempt starts from a fresh clone
    second, base2 = attempt(tmp_path, mirror_dir, remote, "two")
    assert base2 == base
    restored, problem = restore_checkpoint(second, mirror_dir, "t1", base)
    assert (restored, problem) == (two.commit, None)
    assert (second.work_tree / "half.txt").read_text() == "half of the work\n"
    status = git("status", "--short", cwd=second.work_tree)
    assert "?? half.txt" in status and " M README.md" in status  # the agent sees its changes
    (second.work_tree / "rest.txt").write_text("the rest\n")
    summary = repo.commit_all(second, "t1: the whole task", base)
    assert sorted(summary.files_changed) == ["README.md", "half.txt", "rest.txt"]
    assert repo.push_to_mirror(second, mirror_dir, "orchestrator/t1") is None
    assert drop_checkpoint(second, mirror_dir, "t1") is None
    assert log(mirror_dir, "orchestrator/t1") == ["t1: the whole task", "initial"]
    assert wip_branch("t1") not in git("branch", "--list", cwd=mirror_dir)


def test_no_checkpoint_or_a_foreign_one_is_said(tmp_path: Path, mirror) -> None:
    mirror_dir, remote = mirror
    workspace, base = attempt(tmp_path, mirror_dir, remote, "one")
    commit, problem = restore_checkpoint(workspace, mirror_dir, "t1", base)
    assert commit is None and problem == "no checkpoint of task t1 in the mirror (orchestrator/t1.wip)"
    tree = git("rev-parse", f"{base}^{{tree}}", cwd=mirror_dir).strip()
    orphan = git("-c", "user.name=x", "-c", "user.email=x@x", "commit-tree", tree, "-m", "other",
                 cwd=mirror_dir).strip()
    git("update-ref", f"refs/heads/{wip_branch('t1')}", orphan, cwd=mirror_dir)
    commit, problem = restore_checkpoint(workspace, mirror_dir, "t1", base)
    assert commit is None and "does not build on this attempt's base" in (problem or "")


def test_a_tree_the_runtime_refuses_is_not_checkpointed(tmp_path: Path, mirror) -> None:
    mirror_dir, remote = mirror
    workspace, base = attempt(tmp_path, mirror_dir, remote, "one")
    os.symlink("/etc/shadow", workspace.work_tree / "leak")
    with pytest.raises(WorkTreeRefused):
        write_checkpoint(workspace, mirror_dir, "t1", base, LIMITS)
    problems: list[str] = []
    keeper = Checkpointer(lambda last: write_checkpoint(workspace, mirror_dir, "t1", base, LIMITS, last),
                          on_problem=problems.append)
    assert keeper.checkpoint_now() is None and problems[0].startswith("checkpoint not written: The symlink leak")
    assert wip_branch("t1") not in git("branch", "--list", cwd=mirror_dir)


def test_the_checkpointer_writes_when_poked(tmp_path: Path, mirror) -> None:
    mirror_dir, remote = mirror
    workspace, base = attempt(tmp_path, mirror_dir, remote, "one")
    made = threading.Event()

    def write(last):
        checkpoint = write_checkpoint(workspace, mirror_dir, "t1", base, LIMITS, last)
        made.set()
        return checkpoint

    keeper = Checkpointer(write, interval_s=600)
    keeper.start()
    (workspace.work_tree / "turn.txt").write_text("after a turn\n")
    keeper.poke()
    assert made.wait(60)
    keeper.stop()
    assert keeper.count == 1 and keeper.last is not None and keeper.last.pushed
    assert "turn.txt" in git("ls-tree", "--name-only", wip_branch("t1"), cwd=mirror_dir)
