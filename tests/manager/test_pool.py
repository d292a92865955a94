"""Warm pool workers on the host: real processes, real git, the real filesystem and watcher.

Several ``orchestrator-worker --warm`` processes wait on one root under a pool heartbeat the test
writes; they race for each task through the normal claim path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from orchestration_protocol import (
    CancelRequest,
    Layout,
    Result,
    Task,
    atomic_write_bytes,
    read_model,
    utc_now,
    write_task,
)
from orchestration_protocol.mirrors import mirror_dir
from orchestration_protocol.pool import (
    PoolHeartbeat,
    PoolWorkerState,
    read_pool_worker,
    read_pool_workers,
    remove_pool_heartbeat,
    write_pool_heartbeat,
)
from tests.gitrepo import git, make_remote
from worker.pool import IDLE_CHECK_S, OpenTasks, spread
from worker.settings import resolve_worker_settings

POOL = "test-pool"


@pytest.fixture
def remote(tmp_path: Path, layout: Layout) -> Path:
    remote = make_remote(tmp_path)
    git("clone", "--quiet", "--bare", str(remote), str(mirror_dir(layout, str(remote))))
    return remote


def beat(layout: Layout, *, age_s: float = 0.0, stale_after_s: float = 30.0) -> None:
    write_pool_heartbeat(
        layout,
        PoolHeartbeat(
            pool=POOL,
            profile="default",
            size=3,
            heartbeat_at=utc_now() - timedelta(seconds=age_s),
            stale_after_s=stale_after_s,
        ),
    )


def start_warm(layout: Layout, name: str, profile: str = "default") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "--warm", "--pool-name", POOL, "--profile", profile,
         "--root", str(layout.root), "--worker-id", name],
        env={**os.environ, "ORCHESTRATOR_HEARTBEAT_S": "0.5"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def wait_until(condition, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def idle_names(layout: Layout) -> set[str]:
    return {r.name for r in read_pool_workers(layout) if r.state == PoolWorkerState.IDLE}


@pytest.fixture
def warm(layout: Layout):
    beat(layout)
    started: list[subprocess.Popen[bytes]] = []

    def start(*names: str, profile: str = "default") -> list[subprocess.Popen[bytes]]:
        workers = [start_warm(layout, name, profile) for name in names]
        started.extend(workers)
        wait_until(lambda: set(names) <= idle_names(layout), what="idle records")
        return workers

    yield start
    for worker in started:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def result_of(layout: Layout, task_id: str) -> Result:
    return read_model(layout.result_file(task_id), Result, task_id)


def command_task(task_id: str, prompt: str, remote: Path, **fields: object) -> Task:
    return Task(id=task_id, prompt=prompt, agent="command", repo=str(remote), **fields)


def test_racing_idle_workers_claim_a_task_once_and_the_others_stay_idle(
    layout: Layout, remote: Path, warm
) -> None:
    workers = warm("w1", "w2", "w3")
    write_task(layout, command_task("t1", "echo one > one.txt", remote))
    wait_until(lambda: layout.result_file("t1").exists(), what="t1's result")
    result = result_of(layout, "t1")
    assert result.status == "success" and result.worker_id in {"w1", "w2", "w3"}
    assert [path.name for path in layout.claim_dir("t1").iterdir()] == ["1.json"]
    winner = {"w1": workers[0], "w2": workers[1], "w3": workers[2]}[result.worker_id]
    assert winner.wait(timeout=10) == 0  # one task, then it exits
    others = {"w1", "w2", "w3"} - {result.worker_id}
    time.sleep(0.5)
    assert idle_names(layout) == others
    assert all(w.poll() is None for w in workers if w is not winner)
    busy = read_pool_worker(layout, POOL, result.worker_id)
    assert busy is not None and (busy.state, busy.task_id, busy.attempt) == ("busy", "t1", 1)


def test_idle_workers_leave_what_is_not_theirs(layout: Layout, remote: Path, warm) -> None:
    warm("w1", "w2")
    write_task(layout, command_task("other", "true", remote, profile="flutter"))
    write_task(layout, command_task("dep", "sleep 1", remote, depends_on=["first"]))
    cancel = CancelRequest(task_id="gone", requested_at=utc_now(), reason="not wanted")
    atomic_write_bytes(layout.cancel_file("gone"), cancel.to_json_bytes())  # before the task
    write_task(layout, command_task("gone", "true", remote))
    write_task(layout, command_task("elsewhere", "true", "/no/such/repo.git"))
    time.sleep(2)
    assert not layout.claim_dir("other").exists() and not layout.claim_dir("dep").exists()
    assert not layout.claim_dir("elsewhere").exists()
    assert not layout.claim_dir("gone").exists()
    assert idle_names(layout) == {"w1", "w2"}
    write_task(layout, command_task("first", "echo first > f.txt", remote))
    wait_until(lambda: layout.result_file("dep").exists(), what="the dependent task's result")
    assert result_of(layout, "first").status == "success"
    assert result_of(layout, "dep").status == "success"


def test_an_idle_worker_ends_at_once_on_sigterm_and_when_its_pool_stops(
    layout: Layout, warm
) -> None:
    w1, w2, w3 = warm("w1", "w2", "w3")
    sent = time.monotonic()
    w1.send_signal(signal.SIGTERM)
    assert w1.wait(timeout=5) == 0 and time.monotonic() - sent < 2
    wait_until(lambda: "w1" not in idle_names(layout), what="w1's record to go")
    beat(layout, age_s=60, stale_after_s=15)  # the pool's manager died
    seen = IDLE_CHECK_S + 5  # an idle worker looks at its pool's heartbeat this often
    assert w2.wait(timeout=seen) == 0 and w3.wait(timeout=seen) == 0
    beat(layout)
    (w4,) = warm("w4")
    remove_pool_heartbeat(layout, POOL)  # the pool stopped
    assert w4.wait(timeout=seen) == 0
    assert idle_names(layout) == set()


def read_calls(worker: subprocess.Popen[bytes]) -> int:
    """How many read(2) calls the process has made (``/proc/<pid>/io``)."""
    for line in Path(f"/proc/{worker.pid}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    raise AssertionError("no syscr in /proc/<pid>/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/<pid>/io (Linux)")
def test_an_idle_worker_reads_nothing_while_nothing_happens(layout: Layout, warm) -> None:
    """Between events an idle worker only looks at its pool's heartbeat, every IDLE_CHECK_S:
    over a few quiet seconds it makes no more reads than one such look (a worker that polled the
    volume every second made about ten a second)."""
    (worker,) = warm("w1")
    time.sleep(1)
    before = read_calls(worker)
    for _ in range(3):
        time.sleep(1)
        beat(layout)  # the pool beats meanwhile, as it does every 2 s
    assert read_calls(worker) - before <= 3
    assert worker.poll() is None


def test_workers_of_one_pool_try_the_first_tasks_from_places_of_their_own(
    layout: Layout, remote: Path
) -> None:
    """Tasks that appear at once are tried by each idle worker from its own place among the
    first ``size`` of them not yet taken, so the pool takes them without all racing for the
    first; a task of a higher priority is tried first by all."""
    tasks = [command_task(f"t{n}", "true", remote) for n in range(4)]
    for task in tasks:
        write_task(layout, task)
    assert [t.id for t in spread(tasks, 3, 4)] == ["t1", "t2", "t0", "t3"]
    assert [t.id for t in spread(tasks, 1, 4)] == ["t0", "t1", "t2", "t3"]
    assert [t.id for t in spread(tasks[:2], 3, 3)] == ["t1", "t0"]
    taken = []
    for name in ("pool-a", "pool-b", "pool-d"):  # places 0, 2 and 1 among the first three
        settings = resolve_worker_settings(layout.root, name, env={})
        open_tasks = OpenTasks(layout, settings, "default")
        for task in tasks:
            open_tasks.note(task.id)
        claimed = open_tasks.claim(window=3)
        assert claimed is not None
        taken.append(claimed[0].id)
    assert taken == ["t0", "t3", "t2"]  # each its own first try among the tasks not yet taken
    urgent = command_task("urgent", "true", remote, priority=5)
    write_task(layout, urgent)
    open_tasks = OpenTasks(layout, resolve_worker_settings(layout.root, "pool-d", env={}), "default")
    for task_id in ("t1", "urgent"):
        open_tasks.note(task_id)
    claimed = open_tasks.claim(window=3)
    assert claimed is not None and claimed[0].id == "urgent"  # its place (1) is among equals only


def test_orchestrator_pool_on_the_local_backend_serves_run_and_stops_clean(
    layout: Layout, remote: Path, tmp_path: Path
) -> None:
    """The whole command with workers as host processes: a pool of 2 takes what ``run`` creates,
    is refilled, and leaves no worker or record after SIGTERM."""
    from manager.backends.local import RECORDS_DIR

    env = {
        **os.environ,
        "ORCHESTRATION_DIR": str(layout.root),
        "ORCHESTRATOR_BACKEND": "local",
        "ORCHESTRATOR_HEARTBEAT_S": "0.5",
        "REPO_URL": str(remote),
    }
    for name in ("ANTHROPIC_API_KEY", "ORCHESTRATOR_SIMULATE", "ORCHESTRATOR_PROFILES"):
        env.pop(name, None)
    orchestrator = str(Path(sys.executable).parent / "orchestrator")
    pool = subprocess.Popen(
        [orchestrator, "pool", "-n", "2", "--name", "local"], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until(lambda: len(idle_names(layout)) == 2, what="two idle workers")
        done = subprocess.run(
            [orchestrator, "run", "--agent", "command", "--json", "echo a > a.txt", "echo b > b.txt"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        for task_id in ("task-001", "task-002"):
            assert result_of(layout, task_id).worker_id.startswith("pool-local-")
        assert not list((layout.root / RECORDS_DIR).glob("worker-task-*.json"))  # no cold spawn
        wait_until(lambda: len(idle_names(layout)) == 2, what="the pool to refill")
    finally:
        pool.send_signal(signal.SIGTERM)
        out, _ = pool.communicate(timeout=60)
    assert pool.returncode == 0, out
    assert read_pool_workers(layout) == []
    assert not list((layout.root / RECORDS_DIR).glob("pool-*.json"))


def test_a_cold_worker_that_lost_the_race_to_a_pool_worker_is_not_recovered(
    layout: Layout,
) -> None:
    """``dispatch`` may start a task's own worker after its grace while a pool worker claims the
    task first: the cold worker exits 3 (nothing to claim), and the pool worker's claim is left
    alone instead of getting a failed result."""
    from manager.backends import WorkerRecord
    from manager.run.recovery import recover_ended_worker
    from orchestration_protocol import claim_task
    from tests.manager.test_manager_units import FakeBackend

    write_task(layout, Task(id="t", prompt="true", agent="command"))
    assert claim_task(layout, "t", worker_id="pool-p-1234") is not None
    cold = WorkerRecord(name="worker-t", task_id="t", attempt=1, running=False, exit_code=3)
    assert recover_ended_worker(layout, FakeBackend(3), cold, {}) is None
    assert not layout.result_file("t").exists()


def test_pool_records_are_parsed_again_only_when_their_file_changed(layout: Layout) -> None:
    """The dispatcher and the pool look at every pool worker's record on every tick: an
    unchanged file is not read again, a rewritten or removed one is."""
    from manager.run.pool_workers import ChangedFiles, pool_record
    from orchestration_protocol.pool import PoolWorker, worker_record_file, write_pool_worker

    record = PoolWorker(
        name="w1", pool=POOL, profile="default", state=PoolWorkerState.IDLE, since=utc_now()
    )
    write_pool_worker(layout, record)
    assert pool_record(layout, POOL, "w1") == record
    busy = record.model_copy(update={"state": PoolWorkerState.BUSY, "task_id": "t1", "attempt": 1})
    write_pool_worker(layout, busy)
    assert pool_record(layout, POOL, "w1") == busy
    worker_record_file(layout, POOL, "w1").unlink()
    assert pool_record(layout, POOL, "w1") is None

    reads: list[int] = []
    files: ChangedFiles[int] = ChangedFiles()
    path = layout.root / "some.json"
    path.write_text("1")
    for _ in range(3):
        assert files.read(path, lambda: reads.append(1) or len(reads), 0) == 1
    path.write_text("22")
    assert files.read(path, lambda: reads.append(1) or len(reads), 0) == 2
    assert len(reads) == 2
