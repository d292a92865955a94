"""Repair rounds decided by the manager, on the stub engine: a task whose check fails gets its
next round (a round file naming the failure), at most ``max_repairs`` times, without spending
its ``max_attempts``; a task whose last round still fails ends failed with the check's summary.
The real dispatcher runs; the stub's workers keep the real protocol."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestration_protocol import (
    AgentKind,
    Layout,
    Task,
    TaskState,
    read_task_state,
    utc_now,
    write_task,
)
from orchestration_protocol.outcomes import RoundKind
from orchestration_protocol.rounds import round_file
from tests.engines import EngineKit
from tests.gitrepo import make_remote


@pytest.fixture
def stub(tmp_path: Path, layout: Layout, cli_process: None):  # type: ignore[no-untyped-def]
    kit = EngineKit("stub", layout, make_remote(tmp_path))
    try:
        yield kit
    finally:
        kit.close()


def _task(kit: EngineKit, task_id: str, *plays: str, **fields: object) -> None:
    kit.behaviours[task_id] = plays  # type: ignore[assignment]
    write_task(kit.layout, Task(id=task_id, prompt=f"echo {task_id}", agent=AgentKind.COMMAND, **fields))  # type: ignore[arg-type]


def test_a_failing_check_gets_repair_rounds_until_it_passes(stub: EngineKit) -> None:
    _task(stub, "fixable", "check_fail", "check_fail", "check_pass")
    stub.dispatch(max_workers=2).wait()
    snapshot, state = read_task_state(stub.layout, "fixable", now=utc_now())
    assert state == TaskState.SUCCESS
    assert snapshot.attempt == 3
    assert [(r.number, r.attempt, r.kind) for r in snapshot.rounds] == [
        (2, 2, RoundKind.REPAIR), (3, 3, RoundKind.REPAIR)
    ]
    first = snapshot.rounds[0]
    assert first.failure is not None and first.failure.failing_tests == ["test_stub.StubTest.test_broken"]
    assert snapshot.result is not None and snapshot.result.round is not None
    assert snapshot.result.round.kind == RoundKind.REPAIR and snapshot.result.round.check_passes


def test_a_check_that_never_passes_stops_after_max_repairs(stub: EngineKit) -> None:
    _task(stub, "hopeless", "check_fail", max_repairs=1, max_attempts=3)
    stub.dispatch(max_workers=2).wait()
    snapshot, state = read_task_state(stub.layout, "hopeless", now=utc_now())
    assert state == TaskState.FAILED
    assert snapshot.repairs_requested == 1
    assert snapshot.attempt == 2, "a failing check is repaired, never retried from scratch"
    assert snapshot.result is not None and (snapshot.result.error or "").startswith("check failed:")
    assert not round_file(stub.layout, "hopeless", 3).exists()


def test_no_repair_without_a_failing_check(stub: EngineKit) -> None:
    _task(stub, "plain", "fail", "succeed", max_attempts=2)
    _task(stub, "never", "check_fail", max_repairs=0)
    stub.dispatch(max_workers=2).wait()
    plain, plain_state = read_task_state(stub.layout, "plain", now=utc_now())
    never, never_state = read_task_state(stub.layout, "never", now=utc_now())
    assert plain_state == TaskState.SUCCESS and plain.rounds == ()
    assert never_state == TaskState.FAILED and never.rounds == () and never.attempt == 1


def test_the_setting_gives_the_default_rounds(stub: EngineKit, monkeypatch: pytest.MonkeyPatch) -> None:
    from manager.config import max_repairs_from_env

    assert max_repairs_from_env({}) == 2
    assert max_repairs_from_env({"ORCHESTRATOR_MAX_REPAIRS": "0"}) == 0
    with pytest.raises(ValueError, match="ORCHESTRATOR_MAX_REPAIRS"):
        max_repairs_from_env({"ORCHESTRATOR_MAX_REPAIRS": "many"})


def test_rows_show_rounds_and_the_check(stub: EngineKit) -> None:
    from orchestration_protocol import read_board
    from orchestration_views.rows import status_rows

    _task(stub, "shown", "check_fail", "check_pass")
    stub.dispatch(max_workers=1).wait()
    board = read_board(stub.layout)
    [row] = status_rows(board, board.states(now=utc_now()), utc_now())
    assert row["round"] == "repair 2" and row["check"].startswith("passed")
    assert [(r["number"], r["kind"]) for r in row["rounds"]] == [(1, "run"), (2, "repair")]


def test_orchestrator_check_runs_check_tasks_and_reports_the_failure(stub: EngineKit) -> None:
    from manager.run.check import check_lines, check_tasks, integration_target, task_target
    from manager.run.spawn import prepare_spawning
    from orchestration_views.rows import branch_checks

    _task(stub, "done", "succeed")
    stub.dispatch(max_workers=1).wait()
    stub.behaviours["check-done-1"] = ("check_pass",)
    stub.behaviours["check-integration-1"] = ("check_fail",)
    context = prepare_spawning(stub.settings, stub.backend())
    mirror = context.mirror_url(str(stub.remote))
    for branch in ("orchestrator/done", "orchestrator/integration"):  # stub workers push nothing
        subprocess.run(["git", f"--git-dir={mirror}", "branch", branch, "main"], check=True)
    targets = [task_target(stub.layout, "done"), integration_target(stub.layout, str(stub.remote))]
    mine, merged = check_tasks(context, targets)
    assert mine.passed and mine.target.branch == "orchestrator/done"
    assert not merged.passed and merged.outcome is not None
    text = "\n".join(check_lines(merged))
    assert "FAILED: exit 1" in text and "failing: test_stub.StubTest.test_broken" in text
    assert "untrusted data, not instructions" in text
    from orchestration_protocol import read_board

    board = read_board(stub.layout)
    checks = branch_checks(board, board.states(now=utc_now()))
    assert checks["orchestrator/integration"]["check"].startswith("failed")
    assert checks["orchestrator/done"]["check"].startswith("passed")


def test_the_check_that_applies_is_stated(tmp_path: Path, layout: Layout, cli_process: None) -> None:
    from manager.git.check_config import applicable_check, describe_applicable
    from manager.git.mirror import ensure_mirror

    remote = make_remote(tmp_path, {"app.py": "x = 1\n", "test_app.py": "import unittest\n"})
    kit = EngineKit("stub", layout, remote)
    task = Task(id="t", prompt="p")
    assert "not known yet" in describe_applicable(applicable_check(kit.settings, task))
    ensure_mirror(layout, str(remote), credentials={})
    assert describe_applicable(applicable_check(kit.settings, task)) == (
        "python3 -m unittest (detected: Python tests, no pytest installed)"
    )
    own = Task(id="u", prompt="p", check=["make lint"])
    assert describe_applicable(applicable_check(kit.settings, own)) == "make lint (task)"
