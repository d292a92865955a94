"""Archiving ended tasks: real files moved on a real filesystem, read back through the archive."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest

from orchestration_protocol import (
    Layout,
    Task,
    TaskState,
    WorkerPhase,
    read_board,
    try_claim_attempt,
    utc_now,
    write_task,
)
from orchestration_protocol.archive import (
    archive_ended,
    archive_layout,
    archive_task,
    finish_moves,
    layout_of,
)
from orchestration_protocol.state import read_task_state
from tests.dashboard_helpers import finished_task


def test_only_ended_tasks_leave_the_hot_set(layout: Layout) -> None:
    finished_task(layout, "done")
    finished_task(layout, "broke", "failed")
    write_task(layout, Task(id="waiting", prompt="not yet"))
    write_task(layout, Task(id="busy", prompt="running"))
    handle = try_claim_attempt(layout, "busy", 1, worker_id="w")
    assert handle is not None
    handle.heartbeat(WorkerPhase.RUNNING)
    assert archive_ended(layout, now=utc_now()) == ["broke", "done"]
    assert sorted(read_board(layout).snapshots) == ["busy", "waiting"]
    archived = archive_layout(layout)
    assert archived.result_file("done").is_file() and archived.claim_dir("done").is_dir()
    assert not layout.result_file("done").exists() and not layout.log_file("done").exists()


def test_an_archived_task_reads_as_before(layout: Layout) -> None:
    finished_task(layout, "done", output="all good")
    before = read_task_state(layout, "done", now=utc_now())
    archive_ended(layout, now=utc_now())
    where = layout_of(layout, "done")
    assert where == archive_layout(layout)
    snapshot, state = read_task_state(where, "done", now=utc_now())
    assert state == TaskState.SUCCESS and snapshot.result == before[0].result


def test_before_and_state_choose(layout: Layout) -> None:
    finished_task(layout, "done")
    finished_task(layout, "broke", "failed")
    assert archive_ended(layout, before=utc_now() - timedelta(days=1), now=utc_now()) == []
    assert archive_ended(layout, states={TaskState.FAILED}, now=utc_now()) == ["broke"]
    assert archive_ended(layout, now=utc_now()) == ["done"]


def test_a_task_something_still_depends_on_stays(layout: Layout) -> None:
    finished_task(layout, "base")
    finished_task(layout, "middle")
    write_task(layout, Task(id="middle-dep", prompt="x", depends_on=["base"]))
    write_task(layout, Task(id="later", prompt="after middle", depends_on=["middle"]))
    assert archive_ended(layout, now=utc_now()) == []  # base: middle-dep waits for it
    assert read_board(layout).states(now=utc_now())["later"] != TaskState.BLOCKED


def test_an_interrupted_archive_is_finished_by_the_next(layout: Layout) -> None:
    finished_task(layout, "done")
    target = archive_layout(layout)
    target.tasks_dir.mkdir(parents=True)
    os.replace(layout.task_file("done"), target.task_file("done"))  # crashed after the first move
    assert "done" not in read_board(layout).snapshots  # never seen as pending meanwhile
    assert finish_moves(layout) == ["done"]
    assert target.result_file("done").is_file() and not layout.result_file("done").exists()
    archive_task(layout, "done")  # again: nothing left to move, nothing fails


@pytest.fixture
def remote(tmp_path):  # the cli fixture's $REPO_URL: these commands need no repository
    return tmp_path / "no-remote.git"


def test_the_archive_command_and_reading_an_archived_task(cli, layout: Layout) -> None:
    finished_task(layout, "done", output="all good")
    layout.log_file("done").write_text("the agent's log\n")
    write_task(layout, Task(id="waiting", prompt="not yet"))
    code, out, _ = cli("archive", "--state", "success", "--json")
    assert code == 0 and json.loads(out)["archived"] == ["done"]
    code, out, _ = cli("result", "done", "--json")
    assert code == 0 and json.loads(out)["output"] == "all good"
    code, out, _ = cli("logs", "done")
    assert code == 0 and "the agent's log" in out
    code, out, _ = cli("status", "--json")
    assert [row["id"] for row in json.loads(out)["tasks"]] == ["waiting"]
    code, _, err = cli("archive", "--state", "pending")
    assert code != 0 and "not an ended state" in err
