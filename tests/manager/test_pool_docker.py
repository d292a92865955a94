"""``orchestrator pool`` against the real Docker engine and the real worker image: idle hardened
workers take tasks as their files appear, race for them safely, are recovered and replaced when
killed, leave nothing behind on SIGTERM, serve ``run``/``dispatch`` before cold spawns, and give a
hostile task no more than a cold worker gives it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchestration_protocol import Layout, Result, read_model
from orchestration_protocol.mirrors import mirror_dir
from orchestration_protocol.pool import PoolWorkerState, read_pool_workers
from tests.conftest import docker_scope
from tests.gitrepo import show
from tests.manager.test_manager_docker import (
    engine,
    env,
    orchestrator,
    result_of,
    start,
    wait_until,
)
from tests.security.test_isolation_docker import PROBES

pytestmark = [pytest.mark.docker, pytest.mark.e2e]
__all__ = ["engine", "env"]


def pool_containers(engine, layout: Layout, *, running_only: bool = False) -> list:
    label = f"orchestrator.root=bind:{layout.root.resolve()}"
    found = engine.containers.list(all=not running_only, filters={"label": label})
    return [c for c in found if "orchestrator.pool" in (c.labels or {})]


def idle(layout: Layout) -> set[str]:
    return {r.name for r in read_pool_workers(layout) if r.state == PoolWorkerState.IDLE}


@pytest.fixture
def pool(env: dict[str, str], layout: Layout, engine):
    """Start ``orchestrator pool -n N --name NAME``; wait until N workers are idle."""
    started: list[subprocess.Popen[str]] = []

    def begin(size: int, name: str = "p") -> subprocess.Popen[str]:
        process = start(env, "pool", "-n", str(size), "--name", name)
        started.append(process)
        try:
            wait_until(lambda: len(idle(layout)) >= size, timeout=90, what=f"{size} idle workers")
        except AssertionError:
            process.kill()
            raise AssertionError(process.communicate()[0]) from None
        return process

    yield begin
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)


def create(env: dict[str, str], task_id: str, prompt: str, *extra: str) -> None:
    done = orchestrator(env, "task", "create", "--id", task_id, "--agent", "command", *extra, prompt)
    assert done.returncode == 0, done.stderr


def test_a_pool_takes_tasks_as_their_files_appear_once_each_and_refills(
    env: dict[str, str], layout: Layout, engine, pool
) -> None:
    pool(3)
    for n in range(4):
        create(env, f"t{n}", f"echo {n} > n.txt && id -u")
    wait_until(
        lambda: all(layout.result_file(f"t{n}").exists() for n in range(4)),
        timeout=120,
        what="four results",
    )
    names = set()
    for n in range(4):
        result = result_of(layout, f"t{n}")
        assert result.status == "success" and result.worker_id.startswith(f"pool-{docker_scope(layout.root)}-p-")
        assert [p.name for p in layout.claim_dir(f"t{n}").iterdir()] == ["1.json"]
        names.add(result.worker_id)
    assert len(names) == 4  # one task per worker: each finished worker was replaced
    wait_until(lambda: len(idle(layout)) == 3, timeout=60, what="the pool to refill")
    container = pool_containers(engine, layout, running_only=True)[0]
    host = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] == "0:0" and host["CapDrop"] == ["ALL"]
    assert host["NetworkMode"] == "none" and host["SecurityOpt"] == ["no-new-privileges"]
    assert "orchestrator.task" not in container.labels  # a task it does not have yet
    status = json.loads(orchestrator(env, "status", "--json").stdout)
    assert {row["worker"] for row in status["tasks"]} == names
    assert status["pools"] == [
        {"pool": "p", "profile": "default", "size": 3, "idle": 3, "busy": 0}
    ]
    logs = orchestrator(env, "logs", "t0", "--worker")
    assert logs.returncode == 0 and "claimed t0 attempt 1" in logs.stdout


def test_a_pool_worker_killed_mid_task_is_recovered_and_the_task_retried(
    env: dict[str, str], layout: Layout, engine, pool
) -> None:
    pool(2)
    create(env, "slow", "sleep 6 && echo done > done.txt", "--retries", "1")
    wait_until(lambda: layout.status_file("slow").exists(), timeout=60, what="a heartbeat")
    holder = json.loads(layout.status_file("slow").read_text())["container"]
    assert holder.startswith(f"pool-{docker_scope(layout.root)}-p-")
    engine.containers.get(holder).kill()
    wait_until(
        lambda: layout.result_file("slow").exists() and result_of(layout, "slow").attempt == 2,
        timeout=120,
        what="the retry's result",
    )
    first = read_model(layout.archived_result_file("slow", 1), Result, "slow")
    assert (first.status, first.exit_code, first.worker_id) == ("failed", 137, "manager")
    assert "SIGKILL" in (first.error or "") and holder in (first.error or "")
    final = result_of(layout, "slow")
    assert final.status == "success" and final.worker_id != holder
    wait_until(lambda: len(idle(layout)) == 2, timeout=60, what="the pool to refill")
    assert holder not in {c.name for c in pool_containers(engine, layout, running_only=True)}
    logs = orchestrator(env, "logs", "slow", "--worker")  # the retry's worker
    assert "claimed slow attempt 2" in logs.stdout


def test_sigterm_stops_the_pool_and_leaves_no_container(
    env: dict[str, str], layout: Layout, engine, pool
) -> None:
    process = pool(3)
    create(env, "long", "sleep 300")
    create(env, "unwanted", "sleep 300")
    wait_until(
        lambda: layout.status_file("long").exists() and layout.status_file("unwanted").exists(),
        timeout=60,
        what="two busy workers",
    )
    cancel = orchestrator(env, "task", "cancel", "unwanted", "--reason", "not needed")
    assert cancel.returncode == 0, cancel.stderr
    wait_until(lambda: layout.result_file("unwanted").exists(), timeout=30, what="the cancel")
    assert result_of(layout, "unwanted").status == "cancelled"
    wait_until(lambda: len(idle(layout)) == 2, timeout=60, what="the pool to refill")
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    assert time.monotonic() - sent < 20
    assert pool_containers(engine, layout) == []
    assert read_pool_workers(layout) == []
    assert result_of(layout, "long").status == "cancelled"  # as docker stop ends a cold worker


def test_run_uses_idle_pool_workers_before_cold_spawns(
    env: dict[str, str], layout: Layout, engine, pool
) -> None:
    pool(2)
    done = orchestrator(env, "run", "--agent", "command", "-n", "4", "--json", "echo a", "echo b")
    assert done.returncode == 0, done.stdout + done.stderr
    for task_id in ("task-001", "task-002"):
        assert result_of(layout, task_id).worker_id.startswith(f"pool-{docker_scope(layout.root)}-p-")
    label = f"orchestrator.root=bind:{layout.root.resolve()}"
    cold = [
        c.name
        for c in engine.containers.list(all=True, filters={"label": label})
        if "orchestrator.task" in (c.labels or {})
    ]
    assert cold == []


def test_a_hostile_task_in_a_pool_worker_cannot_touch_the_queue_or_other_workers(
    env: dict[str, str], layout: Layout, engine, pool, tmp_path: Path
) -> None:
    pool(3)
    before = idle(layout)
    hostile = (
        f"{{ {PROBES}\n"
        "probe read-pool \"ls /runtime/orchestration/pool\"\n"
        "probe pool-record \"echo {} > /runtime/orchestration/pool/p/workers/x.json\"\n"
        "} > probes.txt"
    )
    create(env, "honest", "sleep 2; echo hello > hello.txt")
    create(env, "hostile", hostile)
    wait_until(
        lambda: layout.result_file("hostile").exists() and layout.result_file("honest").exists(),
        timeout=120,
        what="both results",
    )
    mirror = mirror_dir(layout, env["REPO_URL"])
    probes = show(mirror, "orchestrator/hostile", "probes.txt")
    assert "ALLOWED" not in probes, probes
    assert probes.count("refused") == 14, probes
    assert result_of(layout, "honest").status == "success"
    assert not layout.task_file("evil").exists()
    workers = {r.name: r for r in read_pool_workers(layout)}
    assert "x" not in workers
    ran = {result_of(layout, t).worker_id for t in ("honest", "hostile")}
    untouched = before - ran
    assert untouched and untouched <= idle(layout)  # still idle, still running
    running = {c.name for c in pool_containers(engine, layout, running_only=True)}
    assert untouched <= running
