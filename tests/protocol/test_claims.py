"""Claims: exactly once under a race of processes, leases, takeover, fencing, cancel, retries."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from orchestration_protocol import (
    ClaimLost,
    Layout,
    Result,
    Task,
    TaskState,
    WorkerPhase,
    claim_task,
    read_board,
    read_model,
    request_cancel,
    utc_now,
    write_task,
)


def result_of(task_id: str, status: str = "success", output: str = "") -> Result:
    return Result(task_id=task_id, status=status, output=output, completed_at=utc_now())


def state_of(layout: Layout, task_id: str) -> TaskState:
    return read_board(layout).states(now=utc_now())[task_id]


def _race_worker(root: str, worker: int, task_ids: list[str], out: str) -> None:
    layout = Layout(Path(root))
    order = list(task_ids)
    random.Random(worker).shuffle(order)
    won = [task_id for task_id in order if claim_task(layout, task_id, worker_id=f"w{worker}")]
    Path(out).write_text("\n".join(won))


@pytest.mark.slow
def test_sixteen_processes_claim_two_thousand_tasks_exactly_once(
    layout: Layout, tmp_path: Path
) -> None:
    task_ids = [f"task-{n:04d}" for n in range(2000)]
    for task_id in task_ids:
        write_task(layout, Task(id=task_id, prompt="p"))
    context = multiprocessing.get_context("spawn")
    outputs = [tmp_path / f"won-{n}.txt" for n in range(16)]
    workers = [
        context.Process(target=_race_worker, args=(str(layout.root), n, task_ids, str(outputs[n])))
        for n in range(16)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=300)
        assert process.exitcode == 0
    wins = Counter(line for path in outputs for line in path.read_text().split("\n") if line)
    assert set(wins) == set(task_ids)
    assert max(wins.values()) == 1
    assert sum(1 for path in outputs if path.read_text()) > 1, "the race had only one contender"
    for task_id in task_ids:
        assert os.listdir(layout.claim_dir(task_id)) == ["1.json"]


def test_lease_expiry_allows_takeover_as_next_attempt(layout: Layout) -> None:
    write_task(layout, Task(id="t1", prompt="p", max_attempts=2))
    first = claim_task(layout, "t1", worker_id="a", lease_s=0.3)
    assert first is not None and first.attempt == 1
    first.heartbeat(WorkerPhase.RUNNING)
    assert claim_task(layout, "t1", worker_id="b") is None
    assert state_of(layout, "t1") == TaskState.RUNNING
    time.sleep(0.4)
    assert state_of(layout, "t1") == TaskState.LOST
    assert claim_task(layout, "t1", worker_id="b", container_alive=True) is None
    second = claim_task(layout, "t1", worker_id="b", container_alive=False)
    assert second is not None and second.attempt == 2
    with pytest.raises(ClaimLost, match="lost its claim to attempt 2"):
        first.heartbeat(WorkerPhase.RUNNING)
    with pytest.raises(ClaimLost):
        first.publish_result(result_of("t1", output="from the first"))
    second.publish_result(result_of("t1", output="from the second"))
    stored = read_model(layout.result_file("t1"), Result)
    assert (stored.attempt, stored.output) == (2, "from the second")


def test_lost_task_without_attempts_left_is_not_taken_over(layout: Layout) -> None:
    write_task(layout, Task(id="t1", prompt="p"))
    assert claim_task(layout, "t1", lease_s=0.05) is not None
    time.sleep(0.1)
    assert state_of(layout, "t1") == TaskState.LOST
    assert claim_task(layout, "t1") is None
    assert claim_task(layout, "t1", force=True).attempt == 2


def test_result_of_a_stale_attempt_published_first_is_archived_by_the_successor(
    layout: Layout,
) -> None:
    write_task(layout, Task(id="t1", prompt="p", max_attempts=2))
    first = claim_task(layout, "t1", lease_s=0.05)
    time.sleep(0.1)
    second = claim_task(layout, "t1")
    # The first passed its fence check just before the takeover and then published:
    from orchestration_protocol.files import create_exclusive

    create_exclusive(
        layout.result_file("t1"),
        result_of("t1", "failed").model_copy(update={"attempt": 1}).to_json_bytes(),
    )
    assert first is not None and second is not None
    second.publish_result(result_of("t1", output="second"))
    assert read_model(layout.result_file("t1"), Result).attempt == 2
    assert read_model(layout.archived_result_file("t1", 1), Result).status == "failed"


def test_failed_task_is_retried_up_to_max_attempts_and_history_is_kept(layout: Layout) -> None:
    write_task(layout, Task(id="t1", prompt="p", max_attempts=3))
    for attempt in (1, 2, 3):
        handle = claim_task(layout, "t1")
        assert handle is not None and handle.attempt == attempt
        handle.publish_result(result_of("t1", "failed", f"try {attempt}"))
    assert claim_task(layout, "t1") is None
    assert state_of(layout, "t1") == TaskState.FAILED
    assert read_model(layout.result_file("t1"), Result).attempt == 3
    assert [read_model(layout.archived_result_file("t1", n), Result).output for n in (1, 2)] == [
        "try 1",
        "try 2",
    ]


def test_dependencies_block_until_success(layout: Layout) -> None:
    write_task(layout, Task(id="a", prompt="p"))
    write_task(layout, Task(id="b", prompt="p", depends_on=["a"]))
    write_task(layout, Task(id="c", prompt="p", depends_on=["missing"]))
    assert read_board(layout).states(now=utc_now()) == {
        "a": "pending",
        "b": "blocked",
        "c": "blocked",
    }
    assert claim_task(layout, "b") is None
    claim_task(layout, "a").publish_result(result_of("a"))
    assert state_of(layout, "b") == TaskState.PENDING
    assert claim_task(layout, "b") is not None


def test_cancel_of_a_pending_task_is_immediate(layout: Layout) -> None:
    write_task(layout, Task(id="t1", prompt="p"))
    assert request_cancel(layout, "t1", "not needed") == TaskState.CANCELLED
    result = read_model(layout.result_file("t1"), Result)
    assert result.status == "cancelled" and "not needed" in (result.error or "")
    assert claim_task(layout, "t1") is None


def test_cancel_of_a_running_task_is_seen_by_the_holder(layout: Layout) -> None:
    write_task(layout, Task(id="t1", prompt="p"))
    handle = claim_task(layout, "t1")
    assert handle is not None and handle.cancel_request() is None
    handle.heartbeat(WorkerPhase.RUNNING)
    assert request_cancel(layout, "t1", "stop") == TaskState.RUNNING
    request = handle.cancel_request()
    assert request is not None and request.reason == "stop"


def _paused_holder(root: str, ready: str, go: str, outcome: str) -> None:
    layout = Layout(Path(root))
    handle = claim_task(layout, "t1", worker_id="paused", lease_s=0.5)
    assert handle is not None
    handle.heartbeat(WorkerPhase.RUNNING)
    Path(ready).touch()
    lines = []
    while not Path(go).exists():
        time.sleep(0.02)
    for action in ("heartbeat", "publish"):
        try:
            if action == "heartbeat":
                handle.heartbeat(WorkerPhase.RUNNING)
            else:
                handle.publish_result(result_of("t1", output="stale"))
            lines.append(f"{action}: written")
        except ClaimLost as error:
            lines.append(f"{action}: ClaimLost {error}")
    Path(outcome).write_text("\n".join(lines))


def test_holder_paused_past_its_lease_cannot_publish_over_its_successor(
    layout: Layout, tmp_path: Path
) -> None:
    write_task(layout, Task(id="t1", prompt="p", max_attempts=2))
    ready, go, outcome = tmp_path / "ready", tmp_path / "go", tmp_path / "outcome"
    process = multiprocessing.get_context("spawn").Process(
        target=_paused_holder, args=(str(layout.root), str(ready), str(go), str(outcome))
    )
    process.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists()
        os.kill(process.pid, signal.SIGSTOP)
        time.sleep(0.7)
        successor = claim_task(layout, "t1", worker_id="successor", container_alive=False)
        assert successor is not None and successor.attempt == 2
        successor.heartbeat(WorkerPhase.RUNNING)
        go.touch()
        os.kill(process.pid, signal.SIGCONT)
        process.join(timeout=30)
        successor.heartbeat(WorkerPhase.PUBLISHING)
        successor.publish_result(result_of("t1", output="successor"))
    finally:
        if process.is_alive():
            os.kill(process.pid, signal.SIGCONT)
            process.join(timeout=5)
    lines = outcome.read_text().splitlines()
    assert lines[0].startswith("heartbeat: ClaimLost") and lines[1].startswith("publish: ClaimLost")
    stored = read_model(layout.result_file("t1"), Result)
    assert (stored.attempt, stored.output, stored.worker_id) == (2, "successor", "successor")
    assert state_of(layout, "t1") == TaskState.SUCCESS


def test_a_result_with_a_bad_field_is_refused_and_nothing_is_written(layout: Layout) -> None:
    """``model_copy`` does not validate: a worker could publish ``cost_usd: "abc"`` that every
    reader then rejects. publish_result checks every field first."""
    from orchestration_protocol import SchemaViolation

    write_task(layout, Task(id="t1", prompt="p"))
    handle = claim_task(layout, "t1", worker_id="w1")
    assert handle is not None
    bad = result_of("t1").model_copy(update={"cost_usd": "abc"})
    with pytest.raises(SchemaViolation, match=r"cost_usd"):
        handle.publish_result(bad)
    assert not layout.result_file("t1").exists()
    published = handle.publish_result(result_of("t1").model_copy(update={"cost_usd": 0.25}))
    assert read_model(layout.result_file("t1"), Result) == published
