"""``orchestrator doctor`` lists what runs on the real Docker engine for every root on it (issue
21, goal 4): two roots, one with a warm pool (an idle worker, its pool process, the gateway and
the scripted model), one with a running ``sleep`` worker; each is listed with its own things and
its stop command, and a root whose things are stopped leaves the list."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from orchestration_protocol import Layout
from orchestration_protocol.pool import PoolWorkerState, read_pool_workers
from tests.conftest import docker_scope, docker_worker
from tests.manager.test_manager_docker import (
    WORKER_IMAGE,
    engine,
    orchestrator,
    running_tasks,
    start,
    wait_until,
)
from tests.manager.test_scoped_names_docker import root_env, roots

pytestmark = [pytest.mark.docker, pytest.mark.e2e]
__all__ = ["engine", "root_env", "roots"]


def doctor_views(env: dict[str, str]) -> dict[str, dict]:
    done = orchestrator(env, "doctor", "--simulate", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return {view["root"]: view for view in json.loads(done.stdout)["running"]}


def label(layout: Layout) -> str:
    return f"bind:{layout.root.resolve()}"


def test_doctor_lists_each_roots_gateway_workers_and_stop_command(
    roots: tuple[dict[str, str], dict[str, str]],
) -> None:
    a, b = roots
    b["GATEWAY_IDLE_STOP_S"] = "3600"
    layout_a, layout_b = (Layout(Path(env["ORCHESTRATION_DIR"])) for env in roots)
    pool = start(a, "pool", "-n", "1", "--name", "p", "--simulate")
    try:
        wait_until(
            lambda: any(r.state == PoolWorkerState.IDLE for r in read_pool_workers(layout_a)),
            timeout=120, what="an idle pool worker",
        )
        created = orchestrator(b, "task", "create", "--id", "nap", "--agent", "command", "sleep 300")
        assert created.returncode == 0, created.stderr
        spawned = orchestrator(b, "spawn", "default", "nap", "--simulate")
        assert spawned.returncode == 0, spawned.stdout + spawned.stderr
        wait_until(lambda: running_tasks(layout_b) == ["nap"], timeout=120, what="nap running")

        views = doctor_views(a)
        view_a, view_b = views[label(layout_a)], views[label(layout_b)]
        scope_a, scope_b = docker_scope(layout_a.root), docker_scope(layout_b.root)
        assert view_a["current"] and not view_b["current"]
        assert view_a["gateway"]["name"] == f"orchestrator-gateway-{scope_a}"
        assert view_a["gateway"]["idle_since"] is None  # the pool beats: it is needed
        assert view_a["gateway"]["idle_stop_s"] == 300  # the gateway's default
        assert view_a["scripted_model"] == f"orchestrator-scripted-model-{scope_a}"
        pool_workers = [(w["pool"], w["state"], w["task_id"]) for w in view_a["workers"]]
        assert pool_workers == [("p", "idle", None)]
        assert view_a["processes"] == ["orchestrator pool p (1 default workers)"]
        assert view_b["gateway"]["name"] == f"orchestrator-gateway-{scope_b}"
        assert view_b["gateway"]["idle_stop_s"] == 3600  # GATEWAY_IDLE_STOP_S reached it
        assert view_b["gateway"]["stops_at"] is None  # its worker beats
        workers_b = [(w["name"], w["state"], w["task_id"]) for w in view_b["workers"]]
        assert workers_b == [(docker_worker(layout_b.root, "nap"), "running", "nap")]
        assert view_b["processes"] == [] and view_b["files"] == str(layout_b.root.resolve())
        assert f"--root {layout_b.root.resolve()} cleanup --all --gateway" in view_b["stop_hint"]

        text = orchestrator(b, "doctor", "--simulate")
        assert text.returncode == 0, text.stdout + text.stderr
        assert f"gateway orchestrator-gateway-{scope_b}: up" in text.stdout
        assert f"worker {docker_worker(layout_b.root, 'nap')}: running, nap" in text.stdout
        assert f"stop: orchestrator --root {layout_b.root} cleanup --all --gateway" in text.stdout
        assert "process orchestrator pool p" in text.stdout  # root a's, listed from root b

        cleaned = orchestrator(b, "cleanup", "--all", "--gateway", "--simulation")
        assert cleaned.returncode == 0, cleaned.stderr
        views = doctor_views(a)
        assert label(layout_b) not in views and label(layout_a) in views
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.communicate(timeout=60)


def test_a_container_with_a_root_mounted_counts_for_that_root_with_its_compose_stop(
    roots: tuple[dict[str, str], dict[str, str]], engine,
) -> None:
    a, _ = roots
    layout = Layout(Path(a["ORCHESTRATION_DIR"]))
    project = f"doctor{os.getpid()}"
    container = engine.containers.run(
        WORKER_IMAGE, entrypoint=["sleep", "300"], detach=True, name=f"{project}_dispatcher_1",
        labels={"com.docker.compose.project": project, "com.docker.compose.service": "dispatcher"},
        volumes={str(layout.root.resolve()): {"bind": "/orchestration", "mode": "ro"}},
        network_mode="none",
    )
    try:
        view = doctor_views(a)[label(layout)]
        assert view["others"] == [f"{project}_dispatcher_1 (compose {project}/dispatcher)"]
        assert view["gateway"] is None and view["workers"] == []
        assert view["stop_hint"].endswith(f"; docker-compose -p {project} stop")
    finally:
        container.remove(force=True)
