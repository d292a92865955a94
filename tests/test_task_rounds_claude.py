"""The round-keeping facade the runtime calls, end to end with real git, the real mirror and
the real ``claude`` binary against the scripted model: round 1 breaks the check and is
checkpointed; round 2 (a repair) clones the task's branch, resumes the saved session at the
same cwd and fixes it; a lost attempt is resumed from its checkpoint and its session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from manager.git.mirror import ensure_mirror
from orchestration_protocol import Layout, Task
from orchestration_protocol.claude_cli import ClaudeNotFound, find_claude
from orchestration_protocol.models import utc_now
from orchestration_protocol.outcomes import CheckOutcome, SessionUse
from orchestration_protocol.rounds import RoundRequest, write_round
from scripted_model import ScriptedModelServer, claude_env, load_scenarios
from tests.conftest import require
from tests.gitrepo import git, make_remote
from worker import repo
from worker.checkpoint import wip_branch
from worker.checks import check_environment
from worker.process import run_supervised
from worker.task_rounds import TaskRounds, stable_agent_root, start_branch

TASK = Task(id="t1", prompt="Add a greeting. scripted: break the check",
            check=["python3 -m unittest"])


@pytest.fixture(scope="module")
def server():
    try:
        find_claude()
    except ClaudeNotFound as error:
        require(False, str(error))
    with ScriptedModelServer(load_scenarios()) as running:
        yield running


@pytest.fixture
def volume(tmp_path: Path):
    layout = Layout(tmp_path / "volume").ensure()
    remote = make_remote(tmp_path)
    yield layout, remote, ensure_mirror(layout, str(remote), credentials={})
    shutil.rmtree(stable_agent_root("t1").parent / "t1", ignore_errors=True)


def one_attempt(server, tmp_path: Path, volume, attempt: int, *, commit: bool = True):
    """What the runtime does for one attempt, through TaskRounds; its rounds, plan and check."""
    layout, remote, mirror = volume
    workspace = repo.Workspace(private=tmp_path / f"private-{attempt}", agent_root=stable_agent_root("t1"))
    workspace.private.mkdir()
    branch = start_branch(layout, TASK, attempt, None)
    base, name = repo.prepare(workspace, mirror, str(remote), branch, "t1", None)
    rounds = TaskRounds(layout, TASK, attempt, workspace, mirror, None, repo.Limits())
    plan = rounds.begin(base)
    rounds.start_checkpoints(None)
    env = claude_env(server.url, home=workspace.agent_home)
    env["CLAUDE_CONFIG_DIR"] = str(rounds.config_dir)
    transcript: list[str] = []

    def on_line(line: str) -> None:
        transcript.append(line)
        rounds.on_agent_line(line)

    command = [str(find_claude()), "-p", "--output-format", "stream-json", "--verbose",
               "--dangerously-skip-permissions", *plan.extra_args]
    outcome = run_supervised(command, cwd=workspace.work_tree, env=env, on_line=on_line,
                             should_stop=lambda: None, stdin_text=plan.prompt)
    assert outcome.exit_code == 0, transcript[-3:]
    assert rounds.end_agent(transcript) is None
    check_env = check_environment({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)})
    check = rounds.run_check(check_env, lambda: None, lambda line: None)
    if commit:
        summary = repo.commit_all(workspace, f"t1: round {plan.report.number}", base)
        assert repo.push_to_mirror(workspace, mirror, name) is None
        rounds.report(summary.files_changed, check, json.loads(transcript[-1]).get("result"))
        assert rounds.finish() is None
    return rounds, plan, check


def test_a_repair_round_resumes_the_session_on_the_branch_and_fixes_the_check(
    server, tmp_path: Path, volume
) -> None:
    layout, _, mirror = volume
    rounds, plan, check = one_attempt(server, tmp_path, volume, 1)
    assert plan.prompt == TASK.prompt and plan.extra_args == []
    assert isinstance(check, CheckOutcome) and not check.passed
    assert rounds.checkpointer is not None and rounds.checkpointer.count >= 1
    write_round(layout, RoundRequest(task_id="t1", number=2, attempt=2, kind="repair",
                                     failure=check, requested_at=utc_now()))
    rounds, plan, check = one_attempt(server, tmp_path, volume, 2)
    assert plan.extra_args[0] == "--resume" and plan.report.session == SessionUse.RESUMED
    assert "the repository's check failed on your branch" in plan.prompt
    assert check is not None and check.passed
    assert git("log", "--format=%s", "orchestrator/t1", cwd=mirror).splitlines() == [
        "t1: round 2", "t1: round 1", "initial"]
    assert wip_branch("t1") not in git("branch", "--list", cwd=mirror)


def test_a_lost_attempt_resumes_from_its_checkpoint_and_session(server, tmp_path: Path, volume) -> None:
    _, _, mirror = volume
    rounds, _, _ = one_attempt(server, tmp_path, volume, 1, commit=False)  # then the worker dies
    assert rounds.checkpointer is not None and rounds.checkpointer.last is not None
    last = rounds.checkpointer.last.commit
    assert "greeting.py" in git("ls-tree", "--name-only", wip_branch("t1"), cwd=mirror)
    _, plan, _ = one_attempt(server, tmp_path, volume, 2)
    assert plan.checkpoint == last
    assert plan.prompt.startswith("Attempt 1 of this task was interrupted")
    assert plan.report.session == SessionUse.RESUMED
    files = git("ls-tree", "--name-only", "orchestrator/t1", cwd=mirror).split()
    assert {"greeting.py", "test_greeting.py"} <= set(files)
    assert git("log", "--format=%s", "orchestrator/t1", cwd=mirror).splitlines() == [
        "t1: round 1", "initial"]


def test_a_missing_session_is_a_fresh_round_that_says_so(server, tmp_path: Path, volume) -> None:
    layout, _, _ = volume
    _, _, check = one_attempt(server, tmp_path, volume, 1)
    shutil.rmtree(layout.artifacts_dir("t1") / "session")
    write_round(layout, RoundRequest(task_id="t1", number=2, attempt=2, kind="repair",
                                     failure=check, requested_at=utc_now()))
    _, plan, check = one_attempt(server, tmp_path, volume, 2)
    assert plan.extra_args == [] and plan.report.session == SessionUse.FRESH
    assert (plan.report.session_note or "").startswith("no saved session for task t1")
    assert check is not None and not check.passed  # a fresh session cannot fix it
