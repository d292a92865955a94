"""The priorities file (``<root>/priorities.csv``) and the queue's order, on real files."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestration_protocol.models import Task
from orchestration_protocol.priorities import (
    PRIORITIES_FILE,
    Priorities,
    ordered,
    ordered_by,
    parse_priorities,
    read_priorities,
)

START = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def task(task_id: str, minutes: int = 0, priority: int = 0) -> Task:
    return Task(id=task_id, prompt="p", created_at=START + timedelta(minutes=minutes),
                priority=priority)  # fmt: skip


def test_without_a_file_the_task_priority_then_age_then_id_decide() -> None:
    tasks = [task("b", 1), task("a", 1), task("old", 0), task("urgent", 5, priority=3)]
    assert [t.id for t in ordered(tasks, Priorities())] == ["urgent", "old", "a", "b"]


def test_the_file_overrides_the_task_exact_ids_beat_globs_and_later_lines_win(
    tmp_path: Path,
) -> None:
    (tmp_path / PRIORITIES_FILE).write_text(
        "task, priority\n"
        "# the release first\n"
        "release-*, 10\n"
        "release-notes, -1   # but not its notes\n"
        "\n"
        "docs-?, 5\n"
        "docs-*, 7\n"
        "urgent, 0\n"
    )
    priorities = read_priorities(tmp_path)
    assert priorities.problems == ()
    tasks = [task("urgent", 0, priority=50), task("release-1", 3), task("release-notes", 1),
             task("docs-a", 2), task("plain", 4)]  # fmt: skip
    assert [t.id for t in ordered(tasks, priorities)] == [
        "release-1", "docs-a", "urgent", "plain", "release-notes"
    ]  # fmt: skip
    pairs = [(t, n) for n, t in enumerate(tasks)]
    assert [p[1] for p in ordered_by(pairs, priorities, lambda p: p[0])] == [1, 3, 0, 4, 2]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("lonely", "'lonely' has 1 fields; write 'task id or glob, priority'."),
        ("a, 1, 2", "'a, 1, 2' has 3 fields; write 'task id or glob, priority'."),
        ("../etc, 1", "'../etc' is not a task id or glob"),
        ("a b, 1", "'a b' is not a task id or glob"),
        (", 4", "'' is not a task id or glob"),
        ("a, high", "the priority 'high' is not a whole number; write one such as 10 or -5."),
        ("a, 1.5", "the priority '1.5' is not a whole number"),
        ("a, 99999999", "the priority 99999999 is out of range"),
    ],
)
def test_a_bad_line_is_reported_with_its_number_and_the_others_apply(
    line: str, reason: str
) -> None:
    priorities = parse_priorities(f"# comment\ngood, 3\n{line}\nlater, -2\n")
    assert [(r.pattern, r.priority, r.line) for r in priorities.rules] == [
        ("good", 3, 2), ("later", -2, 4)
    ]  # fmt: skip
    [problem] = priorities.problems
    assert problem.line == 3 and problem.message.startswith(f"{PRIORITIES_FILE} line 3: ")
    assert reason in problem.message and problem.message.endswith(".")


def test_a_header_is_only_a_header_on_the_first_line() -> None:
    priorities = parse_priorities("a, 1\ntask, priority\n")
    assert [p.line for p in priorities.problems] == [2]


def test_an_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    (tmp_path / PRIORITIES_FILE).write_bytes(b"\xff\xfe bad, 1\n")
    priorities = read_priorities(tmp_path)
    assert priorities.rules == () and priorities.problems[0].line == 0
    assert "UTF-8" in priorities.problems[0].message


def test_a_task_file_may_carry_a_priority_and_it_is_bounded() -> None:
    assert Task(id="t", prompt="p").priority is None
    assert b"priority" not in Task(id="t", prompt="p").to_json_bytes()  # old workers read it
    assert Task.model_validate({"id": "t", "prompt": "p", "priority": -4}).priority == -4
    with pytest.raises(ValueError, match="priority"):
        Task.model_validate({"id": "t", "prompt": "p", "priority": 10**7})


@pytest.mark.parametrize("polling", [False, True])
def test_the_watcher_reports_the_priorities_file_when_asked_and_only_then(
    tmp_path: Path, polling: bool
) -> None:
    from orchestration_protocol import Layout, ProtocolWatcher
    from tests.test_watcher import Recorder, quick_write

    layout = Layout(tmp_path / "root").ensure()
    path = layout.root / PRIORITIES_FILE
    path.write_text("a, 1\n")  # before it starts: reported by the first scan
    asked, others = Recorder(), Recorder()
    kinds = ("task", "priorities")
    with ProtocolWatcher(layout.root, asked, kinds=kinds, polling=polling, rescan_interval_s=0.2), \
            ProtocolWatcher(layout.root, others, polling=polling, rescan_interval_s=0.2):  # fmt: skip
        assert asked.wait_for(1, timeout=10)
        quick_write(path, b"a, 2\n")  # an editor's save: write then rename
        assert asked.wait_for(2, timeout=10)
        with path.open("a") as edited:  # or in place
            edited.write("b, 3\n")
        assert asked.wait_for(3, timeout=10)
        (layout.root / "priorities.csv~").write_text("backup")
        (layout.root / "notes.txt").write_text("not ours")
        time.sleep(0.6)
    assert len(asked.events) >= 3
    assert {(e.kind, e.task_id, e.path) for e in asked.events} == {("priorities", "", path)}
    assert others.events == []
    assert [r.priority for r in read_priorities(layout.root).rules] == [2, 3]


def test_a_warm_pool_worker_takes_the_highest_ready_task_first(tmp_path: Path) -> None:
    """One idle pool worker (a real process), three tasks it may not take yet (their repository
    is not mirrored), a priorities file; once the mirror is there it claims the one the file
    puts first, though it is the newest, and only that one."""
    from orchestration_protocol import Layout, write_task
    from orchestration_protocol.mirrors import mirror_dir
    from tests.gitrepo import git, make_remote
    from tests.test_pool import beat, command_task, result_of, start_warm, wait_until

    layout = Layout(tmp_path / "root").ensure()
    remote = make_remote(tmp_path)
    beat(layout)
    worker = start_warm(layout, "w1")
    try:
        for n, task_id in enumerate(("old-high-in-file", "older", "newest-top")):
            created = START + timedelta(minutes=n)
            priority = 50 if task_id == "old-high-in-file" else 0
            write_task(layout, command_task(task_id, f"echo {n} > {task_id}.txt", remote,
                                            created_at=created, priority=priority))  # fmt: skip
        (layout.root / PRIORITIES_FILE).write_text(
            "newest-*, 100\nold-high-in-file, -1\nbad line\n"
        )
        git("clone", "--quiet", "--bare", str(remote), str(mirror_dir(layout, str(remote))))
        wait_until(lambda: layout.result_file("newest-top").exists(), what="newest-top's result")
        assert result_of(layout, "newest-top").status == "success"
        assert worker.wait(timeout=30) == 0  # one task, then it ends
        assert (
            not layout.claim_dir("older").exists()
            and not layout.claim_dir("old-high-in-file").exists()
        )
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


# --- the dispatcher, status and the dashboard, with the local engine and the real watcher ----


def _cli_env(remote: Path) -> dict[str, str]:
    import os

    return {**os.environ, "REPO_URL": str(remote), "ORCHESTRATOR_BACKEND": "local",
            "ORCHESTRATOR_HEARTBEAT_S": "0.5"}  # fmt: skip


def _orchestrator(layout, env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    return subprocess.run(
        [str(Path(sys.executable).parent / "orchestrator"), "--root", str(layout.root), *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _started_order(layout, ids: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    from orchestration_protocol import Claim
    from orchestration_protocol.files import read_model

    claimed = {i: read_model(layout.claim_file(i, 1), Claim).claimed_at for i in ids}
    return sorted(ids, key=lambda i: claimed[i])


def test_the_dispatcher_starts_the_highest_first_and_an_edit_reorders_the_running_queue(
    tmp_path: Path,
) -> None:
    """One worker at a time: ``first`` (the file puts it on top) blocks the slot for a while;
    meanwhile priorities.csv is rewritten so that ``c`` jumps the queue; then ``c``, ``b``,
    ``a`` as the new file says, though ``a`` is the oldest."""
    import subprocess
    import sys
    import threading

    from orchestration_protocol import Layout, read_model_if_exists
    from orchestration_protocol.models import Claim
    from tests.gitrepo import make_remote

    layout = Layout(tmp_path / "orchestration").ensure()
    remote = make_remote(tmp_path)
    env = _cli_env(remote)
    gate = tmp_path / "gate"
    for task_id, prompt in (("a", "echo a"), ("b", "echo b"), ("c", "echo c"),
                            ("first", f"while [ ! -e {gate} ]; do sleep 0.1; done; echo first")):  # fmt: skip
        done = _orchestrator(
            layout, env, "task", "create", prompt, "--agent", "command", "--id", task_id
        )
        assert done.returncode == 0, done.stderr
    (layout.root / PRIORITIES_FILE).write_text("first, 10\na, 3\nb, 2\n")
    dispatch = subprocess.Popen(
        [str(Path(sys.executable).parent / "orchestrator"), "--root", str(layout.root),
         "dispatch", "--until-done", "-n", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while read_model_if_exists(layout.claim_file("first", 1), Claim) is None:
            assert time.monotonic() < deadline and dispatch.poll() is None, "first never started"
            time.sleep(0.1)
        # the person edits the running queue: c first now, then b, then a; and a bad line
        (layout.root / PRIORITIES_FILE).write_text("first, 10\nc, 9\nb, 2\na, 1\noops\n")
        status = _orchestrator(layout, env, "status", "--json")
        document = json.loads(status.stdout)
        assert [row["id"] for row in document["tasks"]] == ["first", "c", "b", "a"]
        assert [row["priority"] for row in document["tasks"]] == [10, 9, 2, 1]
        assert any("priorities.csv line 5: 'oops' has 1 fields" in p["error"]
                   for p in document["problems"])  # fmt: skip
        table = _orchestrator(layout, env, "status").stdout
        assert "priority" in table and "priorities.csv line 5" in table
        threading.Timer(0.5, gate.touch).start()
        out, _ = dispatch.communicate(timeout=240)
        assert dispatch.returncode == 0, out
    finally:
        gate.touch()
        if dispatch.poll() is None:
            dispatch.kill()
            dispatch.wait()
    assert _started_order(layout, ["first", "a", "b", "c"]) == ["first", "c", "b", "a"]


def test_the_dashboard_shows_the_order_and_follows_the_file(tmp_path: Path) -> None:
    """The board's rows carry the priority, in the queue's order; an edit of priorities.csv
    alone (no task changes) reaches the board through the watcher, bad lines as problems."""
    import httpx

    from orchestration_protocol import Layout, write_task
    from tests.dashboard_helpers import served

    layout = Layout(tmp_path / "orchestration").ensure()
    for n, task_id in enumerate(("x", "y", "z")):
        write_task(layout, task(task_id, n))
    with served(layout.root) as url:
        board = httpx.get(f"{url}/api/board").json()
        assert [(r["id"], r["priority"]) for r in board["rows"]] == [("x", 0), ("y", 0), ("z", 0)]
        (layout.root / PRIORITIES_FILE).write_text("z, 5\ny, -1\nbroken, line, here\n")
        deadline = time.monotonic() + 30
        while True:
            board = httpx.get(f"{url}/api/board").json()
            if [r["id"] for r in board["rows"]] == ["z", "x", "y"]:
                break
            assert time.monotonic() < deadline, board
            time.sleep(0.1)
    assert [r["priority"] for r in board["rows"]] == [5, 0, -1]
    [problem] = board["summary"]["problems"]
    assert problem["file"] == str(layout.root / PRIORITIES_FILE)
    assert problem["error"].startswith("priorities.csv line 3: 'broken, line, here' has 3 fields")
