"""The small parts of wiring rounds into the worker: which earlier attempt counts as lost, the
agent's stable root on a host, the profile's check and the limits through the contract."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from manager.profiles import Profile
from orchestration_protocol import Layout, Result, ResultStatus, utc_now
from orchestration_protocol.contract import (
    ENV_MAX_LOG_BYTES,
    ENV_PROFILE,
    ENV_PROFILE_CHECK,
    LIMIT_ENV,
)
from orchestration_protocol.outcomes import CheckCounts, CheckOutcome
from worker.errors import WorkerError
from worker.runtime import check_failure
from worker.settings import resolve_worker_settings
from worker.task_rounds import previous_attempt_lost, stable_agent_root


def archive(layout: Layout, attempt: int, worker_id: str | None) -> None:
    result = Result(task_id="t1", status=ResultStatus.FAILED, completed_at=utc_now(),
                    attempt=attempt, worker_id=worker_id)
    path = layout.archived_result_file("t1", attempt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(result.to_json_bytes())


@pytest.mark.parametrize(
    ("worker_id", "lost"), [(None, True), ("manager", True), ("worker-t1", False)],
    ids=["no-worker", "written-by-the-manager", "written-by-its-worker"],
)
def test_an_attempt_is_lost_only_when_its_worker_wrote_no_result(
    layout: Layout, worker_id: str | None, lost: bool
) -> None:
    archive(layout, 1, worker_id)
    assert previous_attempt_lost(layout, "t1", 2) is lost
    assert previous_attempt_lost(layout, "t1", 1) is False


def test_an_attempt_with_no_result_at_all_was_lost(layout: Layout) -> None:
    assert previous_attempt_lost(layout, "t1", 3) is True


def test_the_agent_root_is_the_same_every_time_and_refuses_a_parent_others_may_write(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    first = stable_agent_root("t1")
    (first / "left-over").write_text("x")
    assert stable_agent_root("t1") == first and not (first / "left-over").exists()
    assert first.parent.stat().st_mode & 0o777 == 0o755
    os.chmod(first.parent, 0o777)
    with pytest.raises(WorkerError, match="that only it may write; remove it"):
        stable_agent_root("t1")


def test_the_profile_s_check_reaches_the_worker_through_the_contract() -> None:
    profile = Profile(name="py", check="python3 -m pytest -q")
    assert profile.check == ["python3 -m pytest -q"]
    with pytest.raises(ValueError, match="empty command"):
        Profile(name="py", check=["ruff check .", " "])
    env = {ENV_PROFILE: "py", ENV_PROFILE_CHECK: json.dumps(profile.check), ENV_MAX_LOG_BYTES: "1000"}
    settings = resolve_worker_settings(Path("/r"), "w", env)
    assert settings.check_profile == ("py", ["python3 -m pytest -q"])
    assert settings.max_log_bytes == 1000 and ENV_MAX_LOG_BYTES in LIMIT_ENV
    assert resolve_worker_settings(Path("/r"), "w", {}).check_profile is None
    with pytest.raises(ValueError, match="is not a JSON list of commands"):
        resolve_worker_settings(Path("/r"), "w", {ENV_PROFILE_CHECK: "pytest"})


def test_a_failing_check_is_one_sentence_with_counts_and_names() -> None:
    check = CheckOutcome(
        passed=False, exit_code=1, failed_command="python3 -m unittest",
        counts=CheckCounts(passed=2, failed=1), failing_tests=["test_div (t.MathTest)\x1b[2J"],
    )
    assert check_failure(check) == (
        "check failed: python3 -m unittest exited 1 (1 failed, 0 errors, 2 passed): "
        "test_div (t.MathTest)\\x1b[2J"
    )
    missing = CheckOutcome(passed=False, error="check command 'x' was not found in the worker image")
    assert check_failure(missing).startswith("check failed: check command 'x' was not found")


def test_a_repair_is_asked_for_with_the_next_round_number(layout: Layout) -> None:
    from orchestration_protocol.rounds import (
        read_round_for_attempt,
        request_repair,
        rounds_requested,
    )

    failure = CheckOutcome(passed=False, exit_code=1)
    first = request_repair(layout, "t1", 2, failure)
    second = request_repair(layout, "t1", 3, failure, integration=True)
    assert first is not None and first.number == 2 and second is not None and second.number == 3
    assert rounds_requested(layout, "t1") == [2, 3]
    found = read_round_for_attempt(layout, "t1", 3)
    assert found is not None and found.integration and found.kind == "repair"
