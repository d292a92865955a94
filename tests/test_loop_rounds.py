"""Repair rounds decided by the manager, on the stub engine: a task whose check fails gets its
next round (a round file naming the failure), at most ``max_repairs`` times, without spending
its ``max_attempts``; a task whose last round still fails ends failed with the check's summary.
The real dispatcher runs; the stub's workers keep the real protocol."""

from __future__ import annotations

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
