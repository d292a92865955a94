"""merge_tasks with real git: real workers (``agent: command``) push to a local bare repo, the
manager's clone merges their branches."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from manager.errors import BadInput, TaskUnknown
from manager.git.merge import MergeOutcome, NotAGitRepository, WorkTreeDirty, merge_tasks
from manager.git.mirror import ensure_mirror
from orchestration_protocol import Layout, Result, Task, atomic_write_bytes, read_model, write_task
from orchestration_protocol.mirrors import mirror_dir
from tests.gitrepo import branches, git, make_remote, show
from worker.cli import RET_OK
from worker.cli import main as run_worker

APP = {
    "README.md": "# demo app\n",
    "app/theme.py": 'BACKGROUND = "white"\nTEXT = "black"\n',
    "app/settings.py": "OPTIONS = {}\n",
    "app/main.py": "print('hello')\n",
}


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path, APP)


@pytest.fixture
def clone(tmp_path: Path, remote: Path) -> Path:
    """The manager's clone, with a committer identity as entrypoint.sh sets one."""
    target = tmp_path / "manager-clone"
    git("clone", "--quiet", str(remote), str(target))
    git("config", "user.name", "Manager", cwd=target)
    git("config", "user.email", "manager@example.invalid", cwd=target)
    return target


def run_task(layout: Layout, remote: Path, task_id: str, command: str, **fields: object) -> Result:
    task = Task(id=task_id, prompt=command, agent="command", repo=str(remote), **fields)
    write_task(layout, task)
    ensure_mirror(layout, str(remote), credentials={})
    assert run_worker(["--task", task_id, "--root", str(layout.root)]) == RET_OK
    return read_model(layout.result_file(task_id), Result, task_id)


def outcomes(report) -> dict[str, str]:
    return {task.task_id: task.outcome.value for task in report.tasks}


def dark_mode(layout: Layout, remote: Path) -> None:
    """Three tasks touching three different files, as the manager would split them."""
    run_task(layout, remote, "theme", "sed -i 's/white/#121212/' app/theme.py")
    run_task(layout, remote, "settings", "echo 'OPTIONS[\"dark_mode\"] = True' >> app/settings.py")
    run_task(layout, remote, "toggle", "mkdir -p app && echo 'def toggle(): ...' > app/toggle.py")


def test_three_independent_branches_merge_and_push(
    layout: Layout, remote: Path, clone: Path
) -> None:
    dark_mode(layout, remote)
    report = merge_tasks(layout, clone, None, push=True)
    assert outcomes(report) == {"settings": "merged", "theme": "merged", "toggle": "merged"}
    assert report.ok and report.pushed and report.push_error is None
    assert all(task.source == "mirror" for task in report.tasks)
    assert "orchestrator/integration" in branches(remote)
    assert "#121212" in show(remote, "orchestrator/integration", "app/theme.py")
    assert "dark_mode" in show(remote, "orchestrator/integration", "app/settings.py")
    assert "toggle" in show(remote, "orchestrator/integration", "app/toggle.py")
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=clone).strip() == "orchestrator/integration"
    assert git("rev-parse", "orchestrator/integration", cwd=remote).strip() == report.head_commit
    assert "theme: merged" in report.describe()


def test_conflict_is_aborted_and_reported_while_the_rest_stays_merged(
    layout: Layout, remote: Path, clone: Path
) -> None:
    run_task(layout, remote, "a-dark", "sed -i 's/white/#121212/' app/theme.py")
    run_task(layout, remote, "b-black", "sed -i 's/white/black/' app/theme.py")
    run_task(layout, remote, "c-settings", "echo 'DARK = True' >> app/settings.py")
    report = merge_tasks(layout, clone, None)
    assert outcomes(report) == {"a-dark": "merged", "b-black": "conflict", "c-settings": "merged"}
    conflict = report.with_outcome(MergeOutcome.CONFLICT)[0]
    assert conflict.files == ["app/theme.py"] and "app/theme.py" in conflict.reason
    assert not report.ok and "b-black: conflict (conflict in app/theme.py)" in report.describe()
    assert git("status", "--porcelain", cwd=clone) == ""
    assert not (clone / ".git" / "MERGE_HEAD").exists()
    assert "#121212" in (clone / "app/theme.py").read_text()
    assert "DARK = True" in (clone / "app/settings.py").read_text()
    assert not report.pushed and report.push_error is None
    assert "orchestrator/integration" not in branches(remote)


def test_dependencies_merge_first_and_a_rerun_finds_them_merged(
    layout: Layout, remote: Path, clone: Path
) -> None:
    run_task(layout, remote, "base", "echo 'PALETTE = {}' > app/palette.py")
    run_task(
        layout,
        remote,
        "uses",
        "echo 'from app.palette import PALETTE' >> app/main.py",
        depends_on=["base"],
    )
    report = merge_tasks(layout, clone, ["uses", "base"])
    assert [task.task_id for task in report.tasks] == ["base", "uses"]
    assert outcomes(report) == {"base": "merged", "uses": "merged"}
    again = merge_tasks(layout, clone, ["base", "uses"])
    assert outcomes(again) == {"base": "already_merged", "uses": "already_merged"}
    assert again.head_commit == report.head_commit


def test_dependent_of_a_conflicting_task_is_skipped(
    layout: Layout, remote: Path, clone: Path
) -> None:
    run_task(layout, remote, "a", "sed -i 's/black/white/' app/theme.py")
    run_task(layout, remote, "b", "sed -i 's/black/grey/' app/theme.py")
    run_task(layout, remote, "c", "echo more >> README.md", depends_on=["b"])
    report = merge_tasks(layout, clone, None)
    assert outcomes(report) == {"a": "merged", "b": "conflict", "c": "skipped"}
    assert "depends on b" in report.tasks[2].reason


def test_unpushed_branch_comes_from_the_bundle(layout: Layout, remote: Path, clone: Path) -> None:
    mirror = ensure_mirror(layout, str(remote), credentials={})
    (mirror / "refs" / "heads" / "orchestrator").write_text("a file where the branch would go\n")
    task = Task(id="offline", prompt="echo 'DARK = 1' >> app/settings.py", agent="command", repo=str(remote))
    write_task(layout, task)
    assert run_worker(["--task", "offline", "--root", str(layout.root)]) == RET_OK
    assert not read_model(layout.result_file("offline"), Result).pushed
    (mirror / "refs" / "heads" / "orchestrator").unlink()
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes refused' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    report = merge_tasks(layout, clone, ["offline"], push=True)
    assert outcomes(report) == {"offline": "merged"}
    assert report.tasks[0].source.endswith("results/offline/changes.bundle")
    assert "DARK = 1" in (clone / "app/settings.py").read_text()
    assert not report.pushed and "pushes refused" in report.push_error


def test_failed_empty_and_tampered_results_are_skipped(
    layout: Layout, remote: Path, clone: Path
) -> None:
    run_task(layout, remote, "fails", "echo partial > partial.txt; exit 3")
    run_task(layout, remote, "empty", "true")
    good = run_task(layout, remote, "forged", "echo x > x.txt")
    forged = good.model_copy(update={"head_commit": "--upload-pack=touch /tmp/pwned"})
    atomic_write_bytes(layout.result_file("forged"), forged.to_json_bytes())
    report = merge_tasks(layout, clone, None)
    assert outcomes(report) == {"empty": "skipped", "fails": "skipped", "forged": "skipped"}
    reasons = {task.task_id: task.reason for task in report.tasks}
    assert "failed" in reasons["fails"]
    assert reasons["empty"] == "it changed no files"
    assert "not a full commit id" in reasons["forged"]
    assert report.head_commit == report.base_commit


def test_commit_missing_everywhere_is_skipped(layout: Layout, remote: Path, clone: Path) -> None:
    run_task(layout, remote, "gone", "echo x > x.txt")
    git("branch", "-D", "orchestrator/gone", cwd=mirror_dir(layout, str(remote)))
    (layout.artifacts_dir("gone") / "changes.bundle").unlink(missing_ok=True)  # made only when the push fails
    report = merge_tasks(layout, clone, None)
    assert outcomes(report) == {"gone": "skipped"}
    assert "not in the mirror, on origin or" in report.tasks[0].reason


def test_existing_integration_branch_on_origin_is_continued(
    layout: Layout, remote: Path, clone: Path, tmp_path: Path
) -> None:
    run_task(layout, remote, "one", "echo one > one.txt")
    merge_tasks(layout, clone, ["one"], push=True)
    run_task(layout, remote, "two", "echo two > two.txt")
    fresh = tmp_path / "fresh-clone"
    git("clone", "--quiet", str(remote), str(fresh))
    report = merge_tasks(layout, fresh, None, push=True)
    assert outcomes(report) == {"one": "already_merged", "two": "merged"}
    assert report.pushed
    assert show(remote, "orchestrator/integration", "one.txt") == "one\n"
    assert show(remote, "orchestrator/integration", "two.txt") == "two\n"


def test_bad_requests_change_nothing(
    layout: Layout, remote: Path, clone: Path, tmp_path: Path
) -> None:
    run_task(layout, remote, "t1", "echo x > x.txt")
    with pytest.raises(TaskUnknown, match="nope"):
        merge_tasks(layout, clone, ["t1", "nope"])
    with pytest.raises(BadInput, match="not a valid branch name"):
        merge_tasks(layout, clone, ["t1"], integration_branch="bad..name")
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAGitRepository):
        merge_tasks(layout, tmp_path / "plain", None)
    (clone / "README.md").write_text("edited\n")
    with pytest.raises(WorkTreeDirty, match="uncommitted changes"):
        merge_tasks(layout, clone, None)
    git("checkout", "--", "README.md", cwd=clone)
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=clone).strip() == "main"


def test_merge_without_configured_identity_uses_a_fallback(
    layout: Layout, remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in (
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
    ):
        monkeypatch.delenv(name, raising=False)
    bare_clone = tmp_path / "no-identity"
    git("clone", "--quiet", str(remote), str(bare_clone))
    run_task(layout, remote, "t1", "echo x > x.txt")
    report = merge_tasks(layout, bare_clone, None)
    assert outcomes(report) == {"t1": "merged"}
    author = git("log", "-1", "--format=%cn", cwd=bare_clone).strip()
    assert author == "Claude Orchestrator"
