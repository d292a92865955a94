"""The worker runtime on the host: real git, real processes, the real filesystem."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration_protocol import Layout, Result, Task, read_model, request_cancel, write_task
from orchestration_protocol.mirrors import mirror_dir
from tests.gitrepo import branches, git, make_remote, show
from worker.cli import RET_NOTHING_TO_CLAIM, RET_OK, RET_USAGE, main
from worker.costs import parse_cost_line


@pytest.fixture
def remote(tmp_path: Path, layout: Layout) -> Path:
    """A bare repository standing in for the remote, mirrored into the volume as the manager does."""
    remote = make_remote(tmp_path)
    git("clone", "--quiet", "--bare", str(remote), str(mirror_dir(layout, str(remote))))
    return remote


def command_task(task_id: str, prompt: str, remote: Path, **fields: object) -> Task:
    return Task(id=task_id, prompt=prompt, agent="command", repo=str(remote), **fields)


def result_of(layout: Layout, task_id: str) -> Result:
    return read_model(layout.result_file(task_id), Result, task_id)


def start_worker(layout: Layout, task_id: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "--task", task_id, "--root", str(layout.root)],
        env={**os.environ, "ORCHESTRATOR_HEARTBEAT_S": "0.5", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_phase(layout: Layout, task_id: str, phase: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = layout.status_file(task_id)
        if path.exists() and json.loads(path.read_text())["phase"] == phase:
            return
        time.sleep(0.05)
    raise AssertionError(f"{task_id} never reached {phase}")


def test_success_commits_pushes_and_reports(layout: Layout, remote: Path) -> None:
    write_task(
        layout,
        command_task(
            "t1",
            "echo more >> README.md && mkdir -p src && echo x > src/new.txt && echo finished",
            remote,
        ),
    )
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    result = result_of(layout, "t1")
    assert result.status == "success" and result.output == "finished" and result.exit_code == 0
    assert sorted(result.files_changed) == ["README.md", "src/new.txt"]
    assert (result.insertions, result.deletions, result.pushed) == (2, 0, True)
    mirror = mirror_dir(layout, str(remote))
    assert "orchestrator/t1" in branches(mirror)
    assert show(mirror, "orchestrator/t1", "src/new.txt") == "x\n"
    assert git("rev-parse", "orchestrator/t1", cwd=mirror).strip() == result.head_commit
    artifacts = layout.artifacts_dir("t1")
    assert "+more" in (artifacts / "changes.patch").read_text()
    assert not (artifacts / "changes.bundle").exists()  # pushed: no bundle needed
    log = layout.log_file("t1").read_text()
    assert "attempt 1" in log and "finished" in log and "result: success" in log
    cost = parse_cost_line(log.splitlines()[-1])
    assert {"startup", "claim", "clone", "agent", "commit", "push", "result"} <= set(cost)
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_NOTHING_TO_CLAIM


def test_a_branch_the_mirror_refuses_is_bundled(layout: Layout, remote: Path) -> None:
    """The bundle is made only when the push into the mirror fails; then it holds the commits."""
    mirror = mirror_dir(layout, str(remote))
    head = git("rev-parse", "HEAD", cwd=mirror).strip()
    (mirror / "refs/heads/orchestrator").write_text(f"{head}\n")  # orchestrator/t1 cannot exist
    write_task(layout, command_task("t1", "echo more >> README.md", remote))
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    result = result_of(layout, "t1")
    assert result.status == "success" and not result.pushed
    git("bundle", "verify", str(layout.artifacts_dir("t1") / "changes.bundle"), cwd=remote)
    assert "bundled instead" in layout.log_file("t1").read_text()


def test_failing_command_still_saves_its_partial_changes(layout: Layout, remote: Path) -> None:
    write_task(layout, command_task("t1", "echo half > half.txt; echo broke >&2; exit 7", remote))
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    result = result_of(layout, "t1")
    assert (result.status, result.exit_code) == ("failed", 7)
    assert "exited 7" in (result.error or "") and "broke" in (result.error or "")
    assert result.files_changed == ["half.txt"]
    assert "+half" in (layout.artifacts_dir("t1") / "changes.patch").read_text()


def test_bad_repository_url_fails_with_a_clear_error(layout: Layout, tmp_path: Path) -> None:
    write_task(
        layout, Task(id="t1", prompt="true", agent="command", repo=str(tmp_path / "missing.git"))
    )
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    result = result_of(layout, "t1")
    assert result.status == "failed"
    assert result.error.startswith("The volume holds no mirror of") and "spawn" in result.error


def test_credentials_in_url_never_reach_the_result(layout: Layout) -> None:
    write_task(
        layout,
        Task(
            id="t1",
            prompt="true",
            agent="command",
            repo="https://user:s3cr3t-token@127.0.0.1:9/x.git",
        ),
    )
    main(["--task", "t1", "--root", str(layout.root)])
    text = layout.result_file("t1").read_text() + layout.log_file("t1").read_text()
    assert "s3cr3t-token" not in text and "***@127.0.0.1" in text


def test_the_agent_environment_holds_nothing_of_the_runtime(
    layout: Layout, remote: Path, tmp_path: Path, monkeypatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "ANTHROPIC_API_KEY").write_text("sk-ant-very-secret-value\n")
    monkeypatch.setenv("ORCHESTRATOR_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("GIT_TOKEN", "ghp_runtime_only_token")
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat-runtime-only")
    write_task(layout, command_task("t1", "env | sort", remote))
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    assert result_of(layout, "t1").status == "success"
    log = layout.log_file("t1").read_text()
    assert "ORCHESTRATOR_TASK_ID=t1" in log
    for leaked in ("very-secret", "ghp_runtime", "oat-runtime", "ORCHESTRATION_DIR", str(secrets)):
        assert leaked not in log


def test_no_repository_anywhere_is_a_failed_result(layout: Layout, monkeypatch) -> None:
    monkeypatch.delenv("REPO_URL", raising=False)
    write_task(layout, Task(id="t1", prompt="true", agent="command"))
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    assert "REPO_URL" in result_of(layout, "t1").error


def test_timeout_stops_the_agent_and_keeps_changes(layout: Layout, remote: Path) -> None:
    write_task(layout, command_task("t1", "echo early > early.txt; sleep 60", remote, timeout_s=1))
    started = time.monotonic()
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    assert time.monotonic() - started < 20
    result = result_of(layout, "t1")
    assert result.status == "timeout" and "timed out after 1s" in result.error
    assert result.files_changed == ["early.txt"]


def test_an_agent_silent_past_the_idle_limit_is_stopped_and_says_so(
    layout: Layout, remote: Path, monkeypatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_IDLE_TIMEOUT_S", "1")
    write_task(layout, command_task("t1", "echo one line; sleep 60", remote))
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    result = result_of(layout, "t1")
    assert result.status == "timeout"
    assert "the agent printed nothing for 1s" in result.error


def test_cancel_request_ends_a_running_task_within_seconds(layout: Layout, remote: Path) -> None:
    write_task(layout, command_task("t1", "echo partial > partial.txt; sleep 120", remote))
    worker = start_worker(layout, "t1")
    wait_for_phase(layout, "t1", "running")
    time.sleep(0.3)
    requested = time.monotonic()
    request_cancel(layout, "t1", "changed my mind")
    assert worker.wait(timeout=10) == RET_OK
    assert time.monotonic() - requested < 10
    result = result_of(layout, "t1")
    assert result.status == "cancelled" and "changed my mind" in result.error
    assert result.files_changed == ["partial.txt"]


def test_sigterm_ends_in_a_cancelled_result_within_seconds(layout: Layout, remote: Path) -> None:
    write_task(layout, command_task("t1", "echo partial > partial.txt; sleep 120", remote))
    worker = start_worker(layout, "t1")
    wait_for_phase(layout, "t1", "running")
    time.sleep(0.3)
    sent = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == RET_OK
    assert time.monotonic() - sent < 10
    result = result_of(layout, "t1")
    assert result.status == "cancelled" and "SIGTERM" in result.error
    assert result.files_changed == ["partial.txt"]


def test_unparsable_task_file_gets_a_result_that_says_so(layout: Layout) -> None:
    layout.task_file("t1").write_text('{"id": "t1", "prompt": ')
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    result = result_of(layout, "t1")
    assert result.status == "failed" and "not valid JSON" in result.error


def test_missing_task_and_missing_root_are_usage_errors(
    layout: Layout, tmp_path: Path, capsys
) -> None:
    assert main(["--task", "nope", "--root", str(layout.root)]) == RET_USAGE
    assert "No task 'nope'" in capsys.readouterr().err
    assert main(["--task", "t1", "--root", str(tmp_path / "absent")]) == RET_USAGE
    assert "does not exist" in capsys.readouterr().err


def test_pool_drains_the_queue_in_dependency_order(layout: Layout, remote: Path) -> None:
    write_task(layout, command_task("b", "echo b > b.txt", remote, depends_on=["a"]))
    write_task(layout, command_task("a", "echo a > a.txt", remote))
    write_task(layout, command_task("c", "echo c > c.txt", remote))
    assert main(["--pool", "--root", str(layout.root)]) == RET_OK
    assert {task_id: result_of(layout, task_id).status for task_id in "abc"} == dict.fromkeys(
        "abc", "success"
    )
    assert result_of(layout, "a").completed_at < result_of(layout, "b").completed_at


def test_force_retries_a_task_past_max_attempts(layout: Layout, remote: Path) -> None:
    write_task(layout, command_task("t1", "exit 1", remote))
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_NOTHING_TO_CLAIM
    assert main(["--task", "t1", "--force", "--root", str(layout.root)]) == RET_OK
    assert result_of(layout, "t1").attempt == 2
    assert (layout.archived_result_file("t1", 1)).exists()


def test_the_agents_own_figures_are_dropped_unless_they_are_numbers() -> None:
    """The result line on claude's stdout can be forged by the agent (same uid); a figure that
    is not a number of at least 0 must not reach the result file."""
    from worker.agents import ClaudeAgent

    agent = ClaudeAgent(Task(id="t", prompt="p"))
    line = {"type": "result", "subtype": "success", "is_error": False, "result": "ok",
            "total_cost_usd": "abc", "num_turns": -3, "usage": {"input_tokens": 5}}  # fmt: skip
    agent.render(json.dumps(line))
    report = agent.report(0)
    assert (report.output, report.cost_usd, report.num_turns) == ("ok", None, None)
    agent.render(json.dumps({**line, "total_cost_usd": 0.5, "num_turns": 4}))
    assert (agent.report(0).cost_usd, agent.report(0).num_turns) == (0.5, 4)


def commit_subjects(repository: Path) -> set[str]:
    """The subject of every commit object in ``repository``, reachable or not."""
    objects = git("cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)",
                  cwd=repository)  # fmt: skip
    commits = [line.split()[0] for line in objects.splitlines() if line.endswith(" commit")]
    return set(git("log", "--no-walk", "--format=%s", *commits, cwd=repository).splitlines())


def test_the_tree_is_checkpointed_after_the_agent_only_when_a_check_runs_before_the_push(
    layout: Layout, remote: Path
) -> None:
    """Without a check the task's branch is pushed right after the agent: no work-in-progress
    commit is pushed (nor one dropped) on the way. With one, the tree is kept as a checkpoint
    while the check runs."""
    write_task(layout, command_task("plain", "echo x > x.txt", remote))
    write_task(layout, command_task("checked", "echo y > y.txt", remote, check=["true"]))
    for task_id in ("plain", "checked"):
        assert main(["--task", task_id, "--root", str(layout.root)]) == RET_OK
        assert result_of(layout, task_id).status == "success"
    mirror = mirror_dir(layout, str(remote))
    subjects = commit_subjects(mirror)
    assert "checked: work in progress (checkpoint)" in subjects
    assert not any(subject.startswith("plain: work in progress") for subject in subjects)
    assert not [branch for branch in branches(mirror) if branch.endswith(".wip")]
