"""The watcher: nothing missed at start, nothing reported twice, overflow reconciled, polling."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration_protocol import Layout, ProtocolEvent, ProtocolWatcher, Task, default_polling

MAX_QUEUED_EVENTS = Path("/proc/sys/fs/inotify/max_queued_events")


class Recorder:
    """Collects events; waits until a condition holds or a deadline passes."""

    def __init__(self) -> None:
        self.events: list[ProtocolEvent] = []
        self.changed = threading.Condition()

    def __call__(self, event: ProtocolEvent) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.events) >= count, timeout)

    def task_ids(self) -> Counter[str]:
        with self.changed:
            return Counter(event.task_id for event in self.events if event.kind == "task")


def quick_write(path: Path, data: bytes) -> None:
    """Write-then-rename without fsync: the same events as an atomic write, much faster."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data)
    os.rename(temp, path)


def task_bytes(task_id: str) -> bytes:
    return Task(id=task_id, prompt="p").to_json_bytes()


def test_files_before_and_during_start_are_each_reported_once(layout: Layout) -> None:
    for n in range(1000):
        quick_write(layout.task_file(f"before-{n}"), task_bytes(f"before-{n}"))
    recorder = Recorder()
    watcher = ProtocolWatcher(layout.root, recorder, polling=False, rescan_interval_s=0.5)

    def write_during_start() -> None:
        for n in range(1000):
            quick_write(layout.task_file(f"during-{n}"), task_bytes(f"during-{n}"))

    writer = threading.Thread(target=write_during_start)
    writer.start()
    with watcher:
        writer.join()
        assert recorder.wait_for(2000, timeout=30)
        time.sleep(1.2)  # two more rescans: nothing may be reported again
        ids = recorder.task_ids()
    assert len(ids) == 2000
    assert set(ids.values()) == {1}


def test_rewritten_status_is_reported_per_version_and_others_ignored(layout: Layout) -> None:
    recorder = Recorder()
    with ProtocolWatcher(layout.root, recorder, polling=False, rescan_interval_s=0.2):
        quick_write(layout.status_file("t1"), b"{}")
        assert recorder.wait_for(1, timeout=10)
        quick_write(layout.status_file("t1"), b'{"a": 1}')
        assert recorder.wait_for(2, timeout=10)
        (layout.tasks_dir / "not an id.json").write_text("{}")
        (layout.tasks_dir / ".hidden.json").write_text("{}")
        (layout.results_dir / "t1").mkdir()
        (layout.results_dir / "t1" / "changes.patch").write_text("diff")
        time.sleep(0.6)
    kinds = [(event.kind, event.task_id) for event in recorder.events]
    assert kinds == [("status", "t1"), ("status", "t1")]


@contextlib.contextmanager
def tiny_inotify_queue(size: int) -> Iterator[str]:
    """Shrink the kernel's inotify queue for new watchers when allowed; else drop events."""
    try:
        original = MAX_QUEUED_EVENTS.read_text()
        MAX_QUEUED_EVENTS.write_text(str(size))
    except OSError:
        yield "simulated"
        return
    try:
        yield "kernel"
    finally:
        MAX_QUEUED_EVENTS.write_text(original)


@pytest.mark.slow
def test_burst_overflowing_the_inotify_queue_is_reconciled_by_rescans(
    layout: Layout, monkeypatch
) -> None:
    recorder = Recorder()
    interval = 2.0
    watcher = ProtocolWatcher(layout.root, recorder, polling=False, rescan_interval_s=interval)
    with tiny_inotify_queue(16) as how:
        if how == "simulated":  # no permission to shrink the queue: lose most events instead
            from orchestration_protocol import watcher as watcher_module

            original = watcher_module._Handler.on_any_event
            monkeypatch.setattr(
                watcher_module._Handler,
                "on_any_event",
                lambda self, event: hash(event.src_path) % 100 == 0 and original(self, event),
            )
        watcher.start()
    try:
        for n in range(20_000):
            quick_write(layout.task_file(f"burst-{n}"), task_bytes(f"burst-{n}"))
        burst_done = time.monotonic()
        seen_all = recorder.wait_for(20_000, timeout=2 * interval + 10)
        waited = time.monotonic() - burst_done
    finally:
        watcher.stop()
    ids = recorder.task_ids()
    assert seen_all, f"{len(ids)} of 20000 seen ({how} overflow)"
    assert len(ids) == 20_000 and set(ids.values()) == {1}
    print(f"burst of 20000 all seen {waited:.2f}s after it ended ({how} overflow)")


def test_polling_mode_sees_files(layout: Layout) -> None:
    recorder = Recorder()
    with ProtocolWatcher(
        layout.root, recorder, polling=True, poll_interval_s=0.1, rescan_interval_s=60
    ):
        quick_write(layout.result_file("t1"), b"{}")
        quick_write(layout.cancel_file("t1"), b"{}")
        assert recorder.wait_for(2, timeout=10)
    assert sorted(event.kind for event in recorder.events) == ["cancel", "result"]


def test_polling_is_chosen_by_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCHESTRATION_POLLING", "1")
    assert default_polling(tmp_path) is True
    monkeypatch.setenv("ORCHESTRATION_POLLING", "0")
    assert default_polling(tmp_path) is False


def test_polling_is_chosen_for_network_filesystems(monkeypatch) -> None:
    from orchestration_protocol import watcher as watcher_module

    monkeypatch.delenv("ORCHESTRATION_POLLING", raising=False)
    assert watcher_module._filesystem_type(Path("/proc/self")) == "proc"
    monkeypatch.setattr(watcher_module, "_filesystem_type", lambda path: "nfs4")
    assert default_polling(Path("/mnt/shared")) is True
    monkeypatch.setattr(watcher_module, "_filesystem_type", lambda path: "ext4")
    assert default_polling(Path("/data")) is False


SHUTDOWN_RACE = """
import sys, tempfile, threading, time
from pathlib import Path
from orchestration_protocol import Layout, ProtocolWatcher
root = Path(tempfile.mkdtemp())
Layout(root).ensure()
for _ in range(150):
    watcher = ProtocolWatcher(root, lambda event: None, polling=False).start()
    stop = threading.Event()
    def churn():
        n = 0
        while not stop.is_set():
            (root / "tasks" / f"t{n % 5}.json").write_text("{}")
            n += 1
    thread = threading.Thread(target=churn)
    thread.start()
    time.sleep(0.005)
    watcher.stop()
    stop.set()
    thread.join()
print("stopped 150 times")
"""


def test_stopping_while_files_change_prints_nothing() -> None:
    """watchdog logs "InotifyEmitter.queue_events() called when the thread is inactive" when an
    emitter's last read races its stop (seen at the end of ``orchestrator run``); without the
    watcher's filter this loop printed it 29 times in 300 stops."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", SHUTDOWN_RACE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped 150 times"
    assert done.stderr == ""
