"""The size of a change on its uncompressed content (``orchestration_protocol.tree_limits``),
with real git: a blob held at many paths counts once per path, and ``orchestrator merge``
refuses a branch over the caps before it writes a byte of its tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration_protocol.tree_limits import ChangeLimits, change_problem, measure_change
from tests.gitrepo import IDENTITY, git, make_remote

MiB = 1024 * 1024


def commit_with_copies(repo: Path, blob_bytes: int, copies: int) -> tuple[str, str]:
    """A commit that adds ``copies`` paths of one blob, made with plumbing (nothing is written
    to the work tree); returns (base, head)."""
    base = git("rev-parse", "HEAD", cwd=repo).strip()
    (repo.parent / "blob").write_bytes(b"z" * blob_bytes)
    sha = git("hash-object", "-w", str(repo.parent / "blob"), cwd=repo).strip()
    for index in range(copies):
        git("update-index", "--add", "--cacheinfo", f"100644,{sha},copy{index}", cwd=repo)
    git(*IDENTITY, "commit", "--quiet", "-m", "copies", cwd=repo)
    return base, git("rev-parse", "HEAD", cwd=repo).strip()


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    make_remote(tmp_path)
    return tmp_path / "seed"


def test_every_path_of_one_blob_counts_in_full(seed: Path) -> None:
    base, head = commit_with_copies(seed, MiB, 21)
    size = measure_change(["git", "-C", str(seed)], base, head)
    assert (size.total_bytes, size.paths, size.largest_bytes) == (21 * MiB, 21, MiB)
    whole = measure_change(["git", "-C", str(seed)], None, head)
    assert whole.paths == 22  # the README too
    problem = change_problem(["git", "-C", str(seed)], base, head, ChangeLimits(max_total_bytes=20 * MiB))
    assert problem and "21 MiB in 21 files" in problem and "over the limit of 20 MiB" in problem
    assert change_problem(["git", "-C", str(seed)], base, head, ChangeLimits()) is None


def test_a_file_over_the_file_cap_and_an_unknown_commit_are_problems(seed: Path) -> None:
    base, head = commit_with_copies(seed, 2 * MiB, 1)
    git_in = ["git", "-C", str(seed)]
    assert "copy0 is 2 MiB" in (change_problem(git_in, base, head, ChangeLimits(max_file_bytes=MiB)) or "")
    assert "could not be measured" in (change_problem(git_in, "0" * 40, head, ChangeLimits()) or "")


def test_merge_refuses_a_branch_over_the_caps_before_writing_its_tree(tmp_path: Path) -> None:
    """Attack 6 on the manager's side: 21 paths of one 25 MiB blob (525 MiB in the tree, a
    bundle of kilobytes) would have been written into the person's clone."""
    from manager.git.merge import merge_tasks
    from manager.git.mirror import ensure_mirror
    from orchestration_protocol import Layout, Result, Task, read_model, write_task
    from worker.cli import RET_OK
    from worker.cli import main as run_worker

    layout = Layout(tmp_path / "orchestration").ensure()
    remote = make_remote(tmp_path)
    clone = tmp_path / "manager-clone"
    git("clone", "--quiet", str(remote), str(clone))
    links = "head -c 25M /dev/zero > big; for i in $(seq 1 20); do ln big link$i; done"
    write_task(layout, Task(id="bomb", prompt=links, agent="command", repo=str(remote)))
    write_task(layout, Task(id="honest", prompt="echo hi > hi.txt", agent="command", repo=str(remote)))
    ensure_mirror(layout, str(remote), credentials={})
    for task_id in ("bomb", "honest"):  # a worker whose cap was raised lets the bomb through
        argv = ["--task", task_id, "--root", str(layout.root)]
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ORCHESTRATOR_MAX_CHANGE_BYTES", str(4096 * MiB))
            assert run_worker(argv) == RET_OK
    assert read_model(layout.result_file("bomb"), Result).status == "success"
    report = merge_tasks(layout, clone, ["bomb", "honest"], push=False)
    outcome = {merged.task_id: merged for merged in report.tasks}
    assert outcome["bomb"].outcome.value == "skipped"
    assert "over the limit of 512 MiB" in (outcome["bomb"].reason or "")
    assert outcome["honest"].outcome.value == "merged"
    assert not (clone / "big").exists() and (clone / "hi.txt").exists()
