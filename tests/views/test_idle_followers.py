"""Following a big idle root touches no task file: the live board, the dispatcher and a real
``orchestrator watch --json`` process read nothing of the tasks that did not change, while a
task that changes is read (and only it). Files and watchdog are real; opens and listings are
counted by an audit hook in this process, and opens and stats of the CLI process by strace."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from manager.run.dispatch import Dispatcher, Tick
from manager.run.spawn import prepare_spawning
from manager.views.monitor import LiveBoard
from orchestration_protocol import Layout, Result, ResultStatus, Task, WorkerPhase, utc_now
from orchestration_protocol.claims import ClaimHandle, request_cancel, try_claim_attempt
from orchestration_protocol.watcher import RACY_S
from tests.conftest import require
from tests.engines import EngineKit
from tests.gitrepo import make_remote

TASKS = 3000
GATE = "gate"
TASK_DIRS = ("tasks", "status", "results", "control", "claims", "rounds", "logs")


def build_root(layout: Layout, count: int = TASKS) -> ClaimHandle:
    """``count`` tasks: even ones ended with a result, odd ones waiting on ``gate``, which a
    worker elsewhere holds (a lease of a day). The files of one real task of each kind are
    copied with the id replaced (fast; the protocol wrote the originals). Returns gate's claim."""
    ended, waiting = "template-ended", "template-waiting"
    layout.task_file(ended).write_bytes(Task(id=ended, prompt="ended").to_json_bytes())
    handle = try_claim_attempt(layout, ended, 1, worker_id="w")
    assert handle is not None
    handle.heartbeat(WorkerPhase.RUNNING)
    handle.publish_result(Result(task_id=ended, status=ResultStatus.SUCCESS, completed_at=utc_now()))
    files = {
        path: path.read_text()
        for path in layout.root.rglob("*")
        if path.is_file() and ended in str(path)
    }
    pending = Task(id=waiting, prompt="waiting", depends_on=[GATE]).to_json_bytes().decode()
    for index in range(count):
        task_id = f"task-{index:05d}"
        if index % 2:
            layout.task_file(task_id).write_text(pending.replace(waiting, task_id))
            continue
        for path, text in files.items():
            target = Path(str(path).replace(ended, task_id))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text.replace(ended, task_id))
    for path in sorted(files, key=lambda p: len(p.parts), reverse=True):
        path.unlink()
    (layout.root / "claims" / ended).rmdir()
    layout.task_file(GATE).write_bytes(Task(id=GATE, prompt="gate").to_json_bytes())
    gate = try_claim_attempt(layout, GATE, 1, worker_id="elsewhere", lease_s=86400)
    assert gate is not None
    gate.heartbeat(WorkerPhase.RUNNING)
    time.sleep(RACY_S + 0.5)  # not a timing assertion: let the directories' last change age
    return gate


def task_of(root: str, path: str) -> str | None:
    """The task a protocol file (or claim or rounds folder) under ``root`` belongs to."""
    if not path.startswith(root + "/"):
        return None
    parts = path[len(root) + 1 :].split("/")
    if len(parts) < 2 or parts[0] not in TASK_DIRS or parts[1].startswith("."):
        return None
    return parts[1] if parts[0] in ("claims", "rounds") else parts[1].rsplit(".", 1)[0]


class Touches:
    """Files opened and directories listed under a root by this process (every thread), while
    recording: an audit hook sees ``open``, ``os.scandir`` and ``os.listdir``."""

    active: list[Touches] = []
    hooked = False

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.opened: list[str] = []
        self.listed: list[str] = []

    @classmethod
    def _hook(cls, event: str, args: tuple[object, ...]) -> None:
        if event not in ("open", "os.scandir", "os.listdir") or not cls.active or not args:
            return
        target = args[0]
        if not isinstance(target, (str, Path)):
            return
        path = os.path.abspath(os.fspath(target))
        for recorder in cls.active:
            if path == recorder.root or path.startswith(recorder.root + "/"):
                (recorder.opened if event == "open" else recorder.listed).append(path)

    @contextlib.contextmanager
    def recording(self) -> Iterator[Touches]:
        if not Touches.hooked:
            sys.addaudithook(Touches._hook)
            Touches.hooked = True
        Touches.active.append(self)
        try:
            yield self
        finally:
            Touches.active.remove(self)

    def tasks_opened(self) -> set[str]:
        return {task for path in self.opened if (task := task_of(self.root, path))}

    def dirs_listed(self) -> set[str]:
        return {os.path.relpath(path, self.root) for path in self.listed}


def until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s:.0f} s"
        time.sleep(0.02)


def test_an_idle_live_board_reads_no_task_and_a_change_reads_that_task_only(layout: Layout) -> None:
    build_root(layout)
    root = layout.root
    with LiveBoard(layout, rescan_s=0.05, reconcile_s=0.05) as live:  # many rare looks
        live.refresh()
        live.states(now=utc_now())
        with Touches(root).recording() as idle:
            changed = []
            for _ in range(40):  # 40 refreshes, about 40 of the watcher's rescans meanwhile
                live.refresh()
                changed.append(live.states(now=utc_now())[1])
                time.sleep(0.05)
        assert idle.opened == [] and idle.listed == []
        assert not any(changed)

        request_cancel(layout, "task-00001")  # a waiting task: cancelled at once
        with Touches(root).recording() as change:
            until(
                lambda: live.refresh().snapshots["task-00001"].current_result is not None,
                "the cancel of task-00001 seen",
            )
            states, changed_now = live.states(now=utc_now())
        assert changed_now and states["task-00001"].value == "cancelled"
        assert change.tasks_opened() == {"task-00001"}
        assert change.dirs_listed() <= {"control", "results", "claims/task-00001", "rounds/task-00001"}

        (root / "tasks" / "task-00003.json").unlink()  # no event: found by the rare look
        (root / "tasks" / "not an id.json").write_text("{}")
        with Touches(root).recording() as removal:
            until(lambda: "task-00003" not in live.refresh().snapshots, "task-00003 dropped")
            until(lambda: bool(live.board.stray_files), "the stray file found")
        assert removal.tasks_opened() == set()
        assert removal.dirs_listed() <= {"tasks", "control", "results"}  # the last two: racy


def test_an_idle_dispatcher_passes_read_no_task_until_one_changes(
    tmp_path: Path, layout: Layout, cli_process: None
) -> None:
    build_root(layout, 2000)
    kit = EngineKit("local", layout, make_remote(tmp_path))
    dispatcher = Dispatcher(prepare_spawning(kit.settings, kit.backend()), max_workers=2, tick_s=0.05)
    ticks: list[Tick] = []
    halt = threading.Event()
    thread = threading.Thread(
        target=lambda: dispatcher.run(until_settled=False, stop=halt, on_tick=ticks.append),
        daemon=True,
    )
    thread.start()
    try:
        until(lambda: len(ticks) >= 3, "the dispatcher's first passes")
        with Touches(layout.root).recording() as idle:
            first = len(ticks)
            until(lambda: len(ticks) >= first + 40, "40 more passes")
            idle_ticks = ticks[first : first + 40]
        assert all(tick.quiet and not tick.spawned for tick in idle_ticks)
        assert idle.tasks_opened() == set()
        assert {path for path in idle.dirs_listed() if path.split("/")[0] in TASK_DIRS} == set()

        request_cancel(layout, "task-00005")
        with Touches(layout.root).recording() as change:
            until(
                lambda: ticks[-1].states.get("task-00005") is not None
                and ticks[-1].states["task-00005"].value == "cancelled",
                "the dispatcher sees task-00005 cancelled",
            )
        assert change.tasks_opened() == {"task-00005"}
        assert not any(tick.spawned for tick in ticks)
    finally:
        halt.set()
        thread.join(30)
        kit.close()


def states(lines: list[str]) -> list[dict[str, str]]:
    return [{"id": row["id"], "state": row["state"]} for row in map(json.loads, list(lines))]


STRACE_LINE = re.compile(r'^\d+\s+(?P<t>\d+\.\d+) \w+\([^"]*"(?P<path>[^"]*)"')


def test_an_idle_watch_process_stats_no_task_file_while_a_changed_task_is_read(
    tmp_path: Path, layout: Layout, cli_process: None
) -> None:
    require(shutil.which("strace") is not None, "strace is not installed (Debian's strace)")
    gate = build_root(layout)
    log = tmp_path / "strace.log"
    orchestrator = str(Path(sys.executable).parent / "orchestrator")
    command = [
        "strace", "-f", "-qq", "-ttt", "-e", "trace=openat,open,stat,lstat,newfstatat,statx",
        "-o", str(log), orchestrator, "--root", str(layout.root), "watch", "--json",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    try:
        until(lambda: len(lines) >= TASKS + 1, "a state line per task", timeout_s=120)
        idle_from = time.time()
        time.sleep(6)  # a window over the 5 s timer; the counts below are what is asserted
        changed_at = time.time()
        gate.publish_result(Result(task_id=GATE, status=ResultStatus.SUCCESS, completed_at=utc_now()))
        until(lambda: {"id": GATE, "state": "success"} in states(lines), "gate's success")
        released = TASKS + 1 + 1 + TASKS // 2  # gate's line, then each waiting task's
        until(lambda: len(lines) >= released, "the waiting tasks released")
        seen_at = time.time()
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # strace and the CLI it runs
        process.wait(timeout=30)
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()
    root = str(layout.root.resolve())
    idle: set[str] = set()
    change: set[str] = set()
    for line in log.read_text(errors="replace").splitlines():
        match = STRACE_LINE.match(line)
        if match is None or (task := task_of(root, match["path"])) is None:
            continue
        at = float(match["t"])
        if idle_from <= at < changed_at:
            idle.add(task)
        elif changed_at <= at <= seen_at:
            change.add(task)
    assert idle == set(), f"files of {len(idle)} tasks touched while idle"
    assert change == {GATE}
