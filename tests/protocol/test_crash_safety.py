"""A writer killed with SIGKILL at random points never leaves a file a reader sees half-written."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

from orchestration_protocol import (
    InvalidFile,
    Layout,
    Result,
    Task,
    WorkerPhase,
    claim_task,
    read_board,
    read_model,
    utc_now,
    write_task,
)

TASKS = 5000  # more than 200 short-lived writers can finish, so every one of them is killed


def _writer(root: str, start: int) -> None:
    """Write tasks, claim them, heartbeat and publish results, as fast as possible."""
    layout = Layout(Path(root))
    prompt = "p" * 20_000  # large enough that a torn write would show
    for n in range(start, TASKS):
        task_id = f"t{n:04d}"
        if not layout.task_file(task_id).exists():
            write_task(layout, Task(id=task_id, prompt=prompt, max_attempts=100))
        handle = claim_task(layout, task_id, worker_id="writer", lease_s=0.001)
        if handle is None:
            continue
        handle.heartbeat(WorkerPhase.RUNNING, message="m" * 1_000)
        handle.publish_result(
            Result(task_id=task_id, status="success", output="o" * 20_000, completed_at=utc_now())
        )


def _reader(root: str, stop: str, report: str) -> None:
    """Read every protocol file over and over; record any file that is not whole and valid."""
    layout = Layout(Path(root))
    reads, bad = 0, []
    while not Path(stop).exists():
        for directory, model in ((layout.tasks_dir, Task), (layout.results_dir, Result)):
            for name in os.listdir(directory):
                if name.startswith(".") or not name.endswith(".json"):
                    continue
                try:
                    read_model(directory / name, model, name[:-5])
                    reads += 1
                except FileNotFoundError:
                    continue
                except InvalidFile as error:
                    bad.append(str(error))
    Path(report).write_text(f"{reads}\n" + "\n".join(bad))


@pytest.mark.slow
def test_writer_killed_two_hundred_times_never_shows_a_partial_file(
    layout: Layout, tmp_path: Path
) -> None:
    context = multiprocessing.get_context("fork")
    stop, report = tmp_path / "stop", tmp_path / "report"
    reader = context.Process(target=_reader, args=(str(layout.root), str(stop), str(report)))
    reader.start()
    rng = random.Random(7)
    kills = 0
    try:
        while kills < 200:
            done = len([n for n in os.listdir(layout.results_dir) if n.endswith(".json")])
            writer = context.Process(target=_writer, args=(str(layout.root), max(done - 2, 0)))
            writer.start()
            time.sleep(rng.uniform(0.0, 0.1))
            if writer.is_alive():
                os.kill(writer.pid, signal.SIGKILL)
                kills += 1
            writer.join()
            assert writer.exitcode in (0, -signal.SIGKILL)
            if done >= TASKS:
                break
    finally:
        stop.touch()
        reader.join(timeout=60)
    reads, *bad = report.read_text().split("\n")
    assert kills == 200
    assert len([n for n in os.listdir(layout.results_dir) if n.endswith(".json")]) >= 5
    assert int(reads) > 0
    assert [line for line in bad if line] == []
    board = read_board(layout)
    assert all(not snapshot.problems for snapshot in board.snapshots.values())
    states = board.states(now=utc_now())
    for task_id, snapshot in board.snapshots.items():
        assert snapshot.task is not None and len(snapshot.task.prompt) == 20_000
        if snapshot.result is not None:
            assert states[task_id] == "success" and len(snapshot.result.output) == 20_000
