"""The ``orchestrator`` CLI with the local backend: real worker processes, real git, the real
filesystem and watcher; no Docker. Fast enough to run on every change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manager.cli import main, spawn_worker_main
from orchestration_protocol import Layout, Result, Task, read_model, write_task
from tests.gitrepo import make_remote

ORCHESTRATOR = [sys.executable, "-c", "import sys; from manager.cli import main; sys.exit(main())"]


pytestmark = pytest.mark.usefixtures("cli_process")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


def result_of(layout: Layout, task_id: str) -> Result:
    return read_model(layout.result_file(task_id), Result, task_id)


def test_run_creates_spawns_waits_and_summarizes(cli, layout: Layout, remote: Path) -> None:
    code, out, _ = cli(
        "run",
        "--agent",
        "command",
        "-n",
        "2",
        "--json",
        "echo one > one.txt && echo wrote one",
        "sleep 0.5 && echo slept",
        "true",
    )
    assert code == 0, out
    summary = json.loads(out)
    assert summary["succeeded"] and summary["summary"] == {"success": 3}
    assert [row["id"] for row in summary["tasks"]] == ["task-001", "task-002", "task-003"]
    assert result_of(layout, "task-001").files_changed == ["one.txt"]
    assert result_of(layout, "task-002").output == "slept"
    code, out, _ = cli("status", "--json")
    assert code == 0 and {row["state"] for row in json.loads(out)["tasks"]} == {"success"}


def test_a_poison_task_stops_at_max_attempts_and_does_not_hold_up_the_others(
    cli, layout: Layout
) -> None:
    started = time.monotonic()
    code, out, _ = cli(
        "run",
        "--agent",
        "command",
        "--retries",
        "2",
        "-n",
        "2",
        "exit 7",
        "echo fine",
    )
    assert code == 1, out
    poison, fine = result_of(layout, "task-001"), result_of(layout, "task-002")
    assert (poison.status, poison.attempt, poison.exit_code) == ("failed", 3, 7)
    assert sorted(p.name for p in layout.claim_dir("task-001").iterdir()) == [
        "1.json",
        "2.json",
        "3.json",
    ]
    assert (fine.status, fine.attempt) == ("success", 1)
    assert fine.completed_at < poison.completed_at
    assert "1 failed, 1 success" in out
    assert time.monotonic() - started < 30


def test_wait_ends_when_a_dependency_failed(cli, layout: Layout) -> None:
    assert cli("task", "create", "--id", "a", "--agent", "command", "exit 1")[0] == 0
    assert (
        cli("task", "create", "--id", "b", "--agent", "command", "--depends-on", "a", "true")[0]
        == 0
    )
    code, out, _ = cli("dispatch", "--until-done", "-n", "2")
    assert code == 1, out
    started = time.monotonic()
    code, out, _ = cli("wait", "--timeout", "20", "--json")
    assert code == 1 and time.monotonic() - started < 5
    states = {row["id"]: row["state"] for row in json.loads(out)["tasks"]}
    assert states == {"a": "failed", "b": "blocked"}
    assert not layout.claim_dir("b").exists()  # never started


def test_dependencies_run_in_order_in_queue_mode(cli, layout: Layout, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "- {id: base, prompt: 'sleep 0.5 && echo base'}\n"
        "- {id: top, prompt: 'echo top', depends_on: [base]}\n"
    )
    assert cli("task", "create", "--plan", str(plan), "--agent", "command")[0] == 0
    code, out, _ = cli("dispatch", "--until-done", "-n", "4", "--json")
    assert code == 0, out
    assert result_of(layout, "top").started_at > result_of(layout, "base").completed_at  # type: ignore[operator]


def test_task_commands(cli, layout: Layout) -> None:
    code, out, _ = cli(
        "task",
        "create",
        "--id",
        "t1",
        "--agent",
        "command",
        "--timeout",
        "60",
        "--env",
        "MODE=fast",
        "--json",
        "echo hi",
    )
    assert code == 0 and json.loads(out)[0]["env"] == {"MODE": "fast"}
    code, out, _ = cli("task", "list", "--json")
    assert json.loads(out) == [{"id": "t1", "state": "pending", "attempt": 0, "prompt": "echo hi"}]
    code, out, _ = cli("task", "show", "t1", "--json")
    assert json.loads(out)["task"]["timeout_s"] == 60
    assert cli("result", "t1")[0] == 4  # not finished
    code, out, _ = cli("task", "cancel", "t1", "--reason", "changed my mind")
    assert code == 0 and "cancelled" in out
    code, out, _ = cli("result", "t1", "--json")
    assert code == 1 and json.loads(out)["status"] == "cancelled"
    code, _, err = cli("spawn", "default", "t1")
    assert code == 2 and "was cancelled" in err


def test_a_failed_task_with_attempts_left_can_be_retried_by_hand(cli, layout: Layout) -> None:
    cli(
        "task",
        "create",
        "--id",
        "t1",
        "--agent",
        "command",
        "--retries",
        "1",
        "test -f marker || { touch marker; exit 1; }",
    )
    assert cli("spawn", "default", "t1")[0] == 0
    _wait_for_result(layout, "t1")
    assert result_of(layout, "t1").status == "failed"
    code, out, _ = cli("task", "retry", "t1", "--json")
    assert code == 0 and json.loads(out)["attempt"] == 2
    _wait_for_result(layout, "t1", attempt=2)
    assert result_of(layout, "t1").attempt == 2


def _wait_for_result(layout: Layout, task_id: str, attempt: int = 1, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if layout.result_file(task_id).exists() and result_of(layout, task_id).attempt >= attempt:
            return
        time.sleep(0.05)
    raise AssertionError(f"no result for {task_id} attempt {attempt}")


def test_a_malformed_task_file_is_an_error_in_status_and_disturbs_nothing(
    cli, layout: Layout
) -> None:
    (layout.tasks_dir / "broken.json").write_text('{"id": "broken", "prompt": ')
    (layout.tasks_dir / "typo.json").write_text('{"id": "typo", "prompt": "x", "retires": 2}')
    (layout.tasks_dir / "not a task.txt").write_text("hello")
    code, out, _ = cli("run", "--agent", "command", "echo fine")
    assert code == 0, out
    code, out, _ = cli("status", "--json")
    status = json.loads(out)
    states = {row["id"]: row["state"] for row in status["tasks"]}
    assert states == {"broken": "invalid", "typo": "invalid", "task-001": "success"}
    errors = " | ".join(problem["error"] for problem in status["problems"])
    assert "broken.json is not valid JSON" in errors
    assert "field 'retires': unknown field" in errors
    assert "not a task.txt" in errors
    code, out, _ = cli("status")
    assert code == 0 and "error:" in out and "broken.json" in out


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["spawn", "rust", "t1"], 2, "Unknown profile 'rust' (known: default, flutter)"),
        (["spawn", "default", "nope"], 2, "No task 'nope'"),
        (["spawn", "default", "../etc"], 2, "is not valid"),
        (["result", "nope"], 2, "No task 'nope'"),
        (["--backend", "k8s", "status"], 2, "Unknown backend 'k8s'"),
        (["task", "create", "--plan", "/nonexistent.yaml"], 2, "cannot be read"),
        (["task", "create", "--id", "t1", "again"], 2, "already exists"),
        (["run", "--retries", "1", "do something with claude"], 3, "No Claude credentials found"),
        (["wait", "t1", "--timeout", "0.5"], 4, "Not finished after 0.5s"),
    ],
)
def test_user_errors_are_one_sentence_never_a_traceback(
    cli, layout: Layout, args: list[str], code: int, expected: str
) -> None:
    write_task(layout, Task(id="t1", prompt="echo", agent="command"))
    got, out, err = cli(*args)
    assert got == code, (out, err)
    assert expected in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1
    got, out, _ = (
        cli(*args, "--json")
        if args[0] != "--backend"
        else (got, json.dumps({"error": expected}), "")
    )
    assert expected in json.loads(out)["error"]


def test_no_task_is_written_when_the_run_cannot_start(cli, layout: Layout) -> None:
    assert cli("run", "--profile", "rust", "--agent", "command", "true")[0] == 2
    assert list(layout.tasks_dir.iterdir()) == []


def test_logs_result_and_schema(cli, layout: Layout) -> None:
    cli("task", "create", "--id", "t1", "--agent", "command", "echo line-one; echo line-two")
    assert cli("spawn", "default", "t1")[0] == 0
    code, out, _ = cli("logs", "t1", "-f")
    assert code == 0 and "line-one" in out and "result: success" in out
    code, out, _ = cli("logs", "t1", "--tail", "1")
    header, opening, *body, closing = out.splitlines()
    assert "untrusted data" in header and opening == "```text" and closing == "```"
    assert len(body) == 1
    code, out, _ = cli("logs", "t1", "--worker")
    assert "line-two" in out
    code, out, _ = cli("result", "t1")
    assert code == 0 and "t1: success" in out and "line-two" in out
    code, out, _ = cli("schema")
    assert set(json.loads(out)) == {"task", "claim", "status", "result", "cancel", "plan", "round"}
    code, out, _ = cli("schema", "task")
    assert json.loads(out)["title"] == "Task"


def test_watch_json_streams_state_changes_until_done(cli, layout: Layout) -> None:
    cli("task", "create", "--id", "t1", "--agent", "command", "sleep 0.3")
    cli("spawn", "default", "t1")
    code, out, _ = cli("watch", "--json", "--until-done")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[-1]["state"] == "success" and {line["id"] for line in lines} == {"t1"}


def test_doctor_names_what_is_missing(cli) -> None:
    code, out, _ = cli("doctor", "--json")
    report = json.loads(out)
    assert code == 3 and not report["ok"]
    failed = [check for check in report["checks"] if not check["ok"]]
    assert [check["name"] for check in failed] == ["credentials"]
    assert "--simulate" in failed[0]["message"]
    assert cli("doctor", "--simulate")[0] == 0


def test_cleanup_removes_ended_workers_only(cli, layout: Layout) -> None:
    cli("run", "--agent", "command", "true")
    code, out, _ = cli("cleanup", "--json")
    assert code == 0 and json.loads(out)["removed"] == ["worker-task-001"]
    assert result_of(layout, "task-001").status == "success"  # the volume is untouched


def test_spawn_worker_is_the_seed_command(
    layout: Layout, remote: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("REPO_URL", str(remote))
    write_task(layout, Task(id="task-001", prompt="echo seed", agent="command"))
    code = spawn_worker_main(["default", "task-001", "--root", str(layout.root), "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["worker"] == "worker-task-001"
    _wait_for_result(layout, "task-001")
    assert result_of(layout, "task-001").output == "seed"


# --- recovery with real processes ---------------------------------------------------------------


def _wait_until(condition, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _running(layout: Layout) -> list[str]:
    out = []
    for path in layout.status_dir.glob("*.json"):
        if json.loads(path.read_text())["phase"] == "running":
            out.append(path.stem)
    return out


# killed workers and a restarted manager: tests/test_engines.py, on every engine


def test_a_dead_docker_socket_is_one_sentence_with_the_fix(
    cli, layout: Layout, monkeypatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/no-docker-here.sock")
    write_task(layout, Task(id="t1", prompt="true", agent="command"))
    expected = (
        "No Docker engine listens at DOCKER_HOST=unix:///tmp/no-docker-here.sock; start the "
        "engine there, or fix or unset DOCKER_HOST."
    )
    code, out, err = cli("--backend", "docker", "spawn", "default", "t1")
    assert (code, err.strip()) == (3, f"error: {expected}")
    code, out, _ = cli("--backend", "docker", "doctor")
    assert code == 3 and f"FAIL engine: {expected}" in out and "Traceback" not in out
    code, out, _ = cli("--backend", "docker", "status", "--json")  # status works without Docker
    assert code == 0 and json.loads(out)["tasks"][0]["state"] == "pending"


def test_help_names_every_command() -> None:
    result = subprocess.run([*ORCHESTRATOR, "--help"], capture_output=True, text=True, check=True)
    for command in (
        "task",
        "spawn",
        "status",
        "watch",
        "wait",
        "logs",
        "result",
        "egress",
        "run",
        "plan",
        "dispatch",
        "pool",
        "cleanup",
        "doctor",
        "schema",
        "merge",
        "push",
    ):
        assert f"  {command} " in result.stdout
    seed = subprocess.run(
        [str(Path(__file__).parents[1] / "scripts" / "spawn-worker"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert seed.stdout.startswith("Usage: spawn-worker [OPTIONS]") and "TASK_ID" in seed.stdout


def test_a_simulated_run_on_the_host_uses_the_scripted_model(
    cli, layout: Layout, tmp_path: Path, monkeypatch
) -> None:
    from orchestration_protocol.claude_cli import ClaudeNotFound, find_claude

    try:
        find_claude()
    except ClaudeNotFound as error:
        from tests.conftest import require

        require(False, str(error))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    try:
        code, out, err = cli("run", "--simulate", "--json", "Add dark mode support")
        assert code == 0, out + err
        result = result_of(layout, "task-001")
        assert result.status == "success" and (result.cost_usd or 0) > 0
        assert any(name.startswith("simulated-") for name in result.files_changed)
    finally:
        code, out, _ = cli("cleanup", "--simulation", "--json")
        assert json.loads(out)["scripted_model_stopped"]


def test_a_hung_worker_is_stopped_failed_and_retried(
    layout: Layout, remote: Path, tmp_path: Path
) -> None:
    """A worker that is alive but stops heartbeating (SIGSTOP) is stopped once its lease is a
    lease overdue; its attempt gets a failed result and the retry runs."""
    run = subprocess.Popen(
        [
            *ORCHESTRATOR,
            "--root",
            str(layout.root),
            "run",
            "--agent",
            "command",
            "--retries",
            "1",
            f"test -f {tmp_path}/marker || {{ touch {tmp_path}/marker; sleep 30; }}; echo done",
        ],
        env={
            **os.environ,
            "REPO_URL": str(remote),
            "ORCHESTRATOR_BACKEND": "local",
            "ORCHESTRATOR_HEARTBEAT_S": "0.3",
            "ORCHESTRATOR_LEASE_S": "1.5",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_until(lambda: _running(layout) == ["task-001"], what="a running worker")
    worker = int((layout.root / ".workers" / "worker-task-001.pid").read_text())
    os.kill(worker, signal.SIGSTOP)
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 0, out
    first = read_model(layout.archived_result_file("task-001", 1), Result, "task-001")
    assert first.status == "failed" and first.exit_code == 137
    assert (result_of(layout, "task-001").attempt, result_of(layout, "task-001").output) == (
        2,
        "done",
    )


def test_watch_draws_the_table_until_done(cli, layout: Layout) -> None:
    cli("run", "--agent", "command", "echo a", "echo b")
    (layout.tasks_dir / "bad.json").write_text("[]")
    code, out, _ = cli("watch", "--until-done")
    assert code == 0 and "1 invalid, 2 success" in out and "task-002" in out
    assert "bad.json must hold a JSON object" in out


def test_wait_follows_heartbeats_past_the_first_lease(
    layout: Layout, remote: Path, capsys, monkeypatch
) -> None:
    """A task that runs longer than its lease stays running for ``wait`` (heartbeats renew it)."""
    monkeypatch.setenv("REPO_URL", str(remote))
    monkeypatch.setenv("ORCHESTRATOR_LEASE_S", "1.5")
    monkeypatch.setenv("ORCHESTRATOR_HEARTBEAT_S", "0.3")
    write_task(layout, Task(id="slow", prompt="sleep 7 && echo done", agent="command"))
    assert main(["--root", str(layout.root), "spawn", "default", "slow"]) == 0
    _wait_until(lambda: _running(layout) == ["slow"], what="the worker's heartbeat")
    assert main(["--root", str(layout.root), "wait", "slow", "--timeout", "60", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["summary"] == {"success": 1}


def test_merge_brings_the_task_branches_together(
    cli, layout: Layout, remote: Path, tmp_path: Path
) -> None:
    assert cli("run", "--agent", "command", "echo a > a.txt", "echo b > b.txt")[0] == 0
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True)
    code, out, err = cli("merge", "--repo-dir", str(clone), "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ok"] and [task["outcome"] for task in report["tasks"]] == ["merged", "merged"]
    files = subprocess.run(
        ["git", "ls-tree", "--name-only", "orchestrator/integration"],
        cwd=clone,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert {"a.txt", "b.txt"} <= set(files)


def test_retry_beyond_max_attempts_forces_the_claim_or_says_why_not(cli, layout: Layout) -> None:
    cli("task", "create", "--id", "t1", "--agent", "command", "exit 1")
    assert cli("spawn", "default", "t1")[0] == 0
    _wait_for_result(layout, "t1")
    code, out, _ = cli("task", "retry", "t1", "--json")
    from worker.cli import parser

    if "--force" in parser().format_help():
        assert code == 0 and json.loads(out)["attempt"] == 2
        _wait_for_result(layout, "t1", attempt=2)
    else:  # an older worker: the refusal is reported, not swallowed
        assert code == 2 and "has no --force" in json.loads(out)["error"]


def test_a_task_with_an_unknown_profile_fails_alone_in_queue_mode(cli, layout: Layout) -> None:
    write_task(layout, Task(id="typo", prompt="true", agent="command", profile="fluter"))
    write_task(layout, Task(id="fine", prompt="echo fine", agent="command"))
    code, out, _ = cli("dispatch", "--until-done", "-n", "2")
    assert code == 1, out
    typo = result_of(layout, "typo")
    assert typo.status == "failed" and "Unknown profile 'fluter'" in (typo.error or "")
    assert result_of(layout, "fine").status == "success"


def test_shared_options_are_accepted_after_the_command(layout: Layout, capsys) -> None:
    """A new user typed ``orchestrator status --root DIR`` and got "No such option: --root"."""
    from manager.commands.common import hoist_global_options

    write_task(layout, Task(id="after", prompt="true", agent="command"))
    assert main(["status", "--root", str(layout.root), "--json"]) == 0
    assert [row["id"] for row in json.loads(capsys.readouterr().out)["tasks"]] == ["after"]
    assert main(["task", "list", f"--root={layout.root}", "--backend", "local", "--json"]) == 0
    assert "after" in capsys.readouterr().out
    assert hoist_global_options(["--root", "A", "run", "x", "--root", "B", "--", "--root"]) == [
        "--root", "B", "--root", "A", "run", "x", "--", "--root"
    ]  # fmt: skip


def test_a_default_branch_that_does_not_exist_fails_before_any_worker(
    cli, layout: Layout, tmp_path: Path
) -> None:
    """A remote whose HEAD names a missing branch: one sentence naming --branch and the branches
    there are, before any worker starts; a merge in such a clone says the same kind of thing."""
    remote = make_remote(tmp_path / "headless")
    subprocess.run(
        ["git", f"--git-dir={remote}", "symbolic-ref", "HEAD", "refs/heads/master"], check=True
    )
    code, out, _ = cli("run", "--agent", "command", "--repo", str(remote), "--json", "true")
    assert code == 1
    [row] = json.loads(out)["tasks"]
    assert row["state"] == "failed"
    assert "(master) does not exist; pass --branch" in row["error"]
    assert "one of: main" in row["error"]
    assert result_of(layout, row["id"]).worker_id == "manager"  # no worker ever started
    code, out, _ = cli("run", "--agent", "command", "--repo", str(remote), "--branch", "nope", "true")
    assert code == 1 and "Branch 'nope' does not exist" in out

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True, capture_output=True)
    code, _, err = cli("merge", "--repo-dir", str(clone))
    assert code == 2
    assert "has no commit checked out" in err and "--branch NAME" in err
    assert "Traceback" not in err and "ambiguous argument" not in err
