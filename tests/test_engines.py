"""The dispatcher and recovery against every engine (``each_engine``: the stub, local processes,
real Docker), and the stub's own ways to end: a crash, an OOM kill, a failed result, a slow
worker that is cancelled."""

from __future__ import annotations

import json
import time

import pytest

from manager.backends import StubConfig, make_backend
from manager.run.dispatch import Dispatcher
from manager.run.spawn import prepare_spawning
from orchestration_protocol import Layout, Result, read_model, request_cancel
from tests.engines import EngineKit

TASKS = ("task-001", "task-002", "task-003")


def wait_until(condition, timeout: float = 60, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def running(layout: Layout) -> list[str]:
    found = []
    for path in sorted(layout.status_dir.glob("*.json")):
        if json.loads(path.read_text())["phase"] == "running" and not layout.result_file(path.stem).exists():
            found.append(path.stem)
    return found


def result_of(layout: Layout, task_id: str) -> Result:
    return read_model(layout.result_file(task_id), Result, task_id)


def test_killed_workers_get_failed_results_and_are_retried(each_engine: EngineKit) -> None:
    kit, layout = each_engine, each_engine.layout
    for task_id in TASKS:
        kit.task(task_id, slow=True)
    run = kit.dispatch(max_workers=3)
    try:
        wait_until(lambda: len(running(layout)) >= 2, what="two running workers")
        victims = running(layout)[:2]
        for task_id in victims:
            kit.kill(task_id)
        tick = run.wait()
    finally:
        run.stop()
    assert tick.progress.done
    for task_id in victims:
        first = read_model(layout.archived_result_file(task_id, 1), Result, task_id)
        assert (first.status, first.exit_code, first.worker_id) == ("failed", 137, "manager")
        assert "SIGKILL" in (first.error or "")
        final = result_of(layout, task_id)
        assert (final.status, final.attempt) == ("success", 2)
    for task_id in sorted(set(TASKS) - set(victims)):
        assert (result_of(layout, task_id).status, result_of(layout, task_id).attempt) == ("success", 1)


def test_a_restarted_manager_finishes_every_task_exactly_once(each_engine: EngineKit) -> None:
    kit, layout = each_engine, each_engine.layout
    for task_id in TASKS:
        kit.task(task_id, slow=True, max_attempts=1)
    first = kit.dispatch(max_workers=2)
    try:
        wait_until(lambda: len(running(layout)) >= 1, what="a running worker")
    finally:
        first.stop()  # the manager goes; its workers go on
    second = kit.dispatch(max_workers=2)
    try:
        tick = second.wait()
    finally:
        second.stop()
    assert tick.progress.done
    for task_id in TASKS:
        assert (result_of(layout, task_id).status, result_of(layout, task_id).attempt) == ("success", 1)
        assert [p.name for p in layout.claim_dir(task_id).iterdir()] == ["1.json"]


# --- the stub's own endings ---------------------------------------------------------------------


@pytest.fixture
def stub(tmp_path, layout: Layout, cli_process: None) -> EngineKit:  # type: ignore[no-untyped-def]
    from tests.gitrepo import make_remote

    kit = EngineKit("stub", layout, make_remote(tmp_path))
    yield kit
    kit.close()


def test_a_crash_and_an_oom_kill_are_recovered_and_retried(stub: EngineKit) -> None:
    layout = stub.layout
    for task_id in ("crashes", "ooms", "fails"):
        stub.task(task_id)
    stub.behaviours.update(crashes=("crash", "succeed"), ooms=("oom", "succeed"), fails=("fail",))
    tick = stub.dispatch(max_workers=3).wait(timeout_s=30)
    assert tick.progress.done
    crashed = read_model(layout.archived_result_file("crashes", 1), Result, "crashes")
    assert (crashed.status, crashed.exit_code, crashed.worker_id) == ("failed", 1, "manager")
    oom = read_model(layout.archived_result_file("ooms", 1), Result, "ooms")
    assert oom.exit_code == 137 and "memory" in (oom.error or "").lower()
    for task_id in ("crashes", "ooms"):
        assert (result_of(layout, task_id).status, result_of(layout, task_id).attempt) == ("success", 2)
    failed = result_of(layout, "fails")  # the worker's own failed result, then its retry's
    assert (failed.status, failed.attempt, failed.worker_id) == ("failed", 2, "worker-fails")


def test_a_slow_worker_heartbeats_and_a_cancel_ends_it_with_its_own_result(stub: EngineKit) -> None:
    layout = stub.layout
    stub.task("slow")
    stub.behaviours["slow"] = ("slow",)
    backend = make_backend(StubConfig(root=layout.root, behaviours=stub.behaviours, slow_s=60))
    stub.backends.append(backend)
    dispatcher = Dispatcher(prepare_spawning(stub.settings, backend), max_workers=1)
    dispatcher.tick()
    wait_until(lambda: running(layout) == ["slow"], what="the slow worker's heartbeat")
    first = json.loads(layout.status_file("slow").read_text())["heartbeat_at"]
    wait_until(
        lambda: json.loads(layout.status_file("slow").read_text())["heartbeat_at"] != first,
        what="a second heartbeat",
    )
    request_cancel(layout, "slow", "enough")
    wait_until(lambda: layout.result_file("slow").exists(), what="the cancelled result")
    assert (result_of(layout, "slow").status, result_of(layout, "slow").worker_id) == ("cancelled", "worker-slow")
    [worker] = backend.workers.all()
    assert (worker.running, worker.exit_code) == (False, 0)


# --- the configs --------------------------------------------------------------------------------


def test_each_engine_has_its_config_told_apart_by_type(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pydantic import TypeAdapter, ValidationError

    from manager.backends import DockerConfig, EngineConfig, LocalConfig, SwarmConfig
    from manager.config import ManagerSettings

    union: TypeAdapter[EngineConfig] = TypeAdapter(EngineConfig)
    assert isinstance(union.validate_python({"type": "local", "root": tmp_path}), LocalConfig)
    assert isinstance(union.validate_python({"type": "stub", "root": tmp_path}), StubConfig)
    with pytest.raises(ValidationError, match="worker_command"):
        union.validate_python({"type": "docker", "root": tmp_path, "worker_command": ["x"]})
    settings = ManagerSettings(root=tmp_path, backend="swarm", volume="v", worker_image="img")
    config = settings.engine_config()
    assert isinstance(config, SwarmConfig) and (config.volume, config.worker_image) == ("v", "img")
    assert type(settings.model_copy(update={"backend": "docker"}).engine_config()) is DockerConfig
    for name in ("docker", "swarm", "local", "stub"):
        backend = make_backend(settings.model_copy(update={"backend": name}).engine_config())
        assert backend.name == name
        backend.close()


def test_a_warm_pool_of_stub_workers_takes_tasks_as_they_appear_and_refills(stub: EngineKit) -> None:
    import threading

    from manager.run.pool import WarmPool, wait_for_pool
    from orchestration_protocol.pool import read_pool_workers

    layout = stub.layout
    backend = stub.backend()
    pool = WarmPool(prepare_spawning(stub.settings, backend), size=2, profile=None, name="p")
    stop = threading.Event()
    loop = threading.Thread(target=pool.run, args=(stop,), daemon=True)
    loop.start()
    try:
        assert wait_for_pool(layout, backend, "p", 2, timeout_s=30)
        for task_id in ("a", "b", "c"):
            stub.task(task_id)
        wait_until(lambda: all(layout.result_file(t).exists() for t in "abc"), what="three results")
        assert {result_of(layout, t).worker_id[:7] for t in "abc"} == {"pool-p-"}
        assert all(result_of(layout, t).status == "success" for t in "abc")
        assert wait_for_pool(layout, backend, "p", 2, timeout_s=30)  # refilled
    finally:
        stop.set()
        loop.join(30)
    assert read_pool_workers(layout) == []
    assert [w for w in backend.workers.all() if w.running] == []
