"""The Swarm backend's pure parts: service names, reading Swarm task states, the swarm check."""

from __future__ import annotations

from pathlib import Path

import pytest

from manager.backends import SwarmConfig
from manager.backends.docker.connection import DockerConnection
from manager.backends.swarm import SERVICE_NAME, Job, SwarmManager, SwarmNotReady, service_name


@pytest.mark.parametrize("task_id", ["task-001", "a.b", "a_b", "A" * 64, "x.y_z-1"])
def test_every_task_id_gets_a_valid_service_name_of_its_own(task_id: str) -> None:
    name = service_name(task_id, 12)
    assert SERVICE_NAME.match(name) and len(name) <= 63 and name.endswith("-attempt-12")
    assert service_name("task-001", 1, "0a1b2c3d") == "worker-0a1b2c3d-task-001-attempt-1"
    assert SERVICE_NAME.match(service_name(task_id, 12, "0a1b2c3d"))
    assert len(service_name(task_id, 12, "0a1b2c3d")) <= 63
    assert service_name("a.b", 1) != service_name("a-b", 1)


def _job(state: str, exit_code: int | None = None, container: str | None = "c1") -> Job:
    service = {"ID": "s1", "Spec": {"Name": "n", "Labels": {"orchestrator.task": "t", "orchestrator.attempt": "2"}}}
    status = {"State": state, "Err": "no suitable node" if state == "rejected" else None,
              "ContainerStatus": {"ContainerID": container, "ExitCode": exit_code}}
    return Job(service, {"Status": status, "CreatedAt": "2026-11-30T11:00:00.123456789Z"})


def test_swarm_task_states_read_as_worker_records() -> None:
    assert _job("running").record("worker-t").running
    assert _job("pending", container=None).record("w").exit_code is None
    killed = _job("failed", 137).record("worker-t")
    assert (killed.running, killed.exit_code, killed.attempt, killed.task_id) == (False, 137, 2, "t")
    assert _job("complete", 0).record("w").exit_code == 0
    rejected = _job("rejected", 0, container=None)
    assert (rejected.running, rejected.exit_code, rejected.error) == (False, None, "no suitable node")
    assert not _job("orphaned", None).running  # its node is gone: the worker is lost


class _Engine:
    def __init__(self, swarm: dict[str, object]) -> None:
        self.swarm = swarm

    def info(self) -> dict[str, object]:
        return {"Swarm": self.swarm}


def test_the_swarm_check_says_how_to_make_a_manager(tmp_path: Path) -> None:
    config = SwarmConfig(root=tmp_path, volume=str(tmp_path))

    def swarm(state: dict[str, object]) -> SwarmManager:
        return SwarmManager(DockerConnection(config, client=_Engine(state)))

    inactive = swarm({"LocalNodeState": "inactive"})
    with pytest.raises(SwarmNotReady, match=r"not a swarm manager \(swarm: inactive\); run 'docker swarm init'"):
        inactive.check()
    worker = swarm({"LocalNodeState": "active", "ControlAvailable": False})
    with pytest.raises(SwarmNotReady, match=r"\(a worker node\)"):
        worker.check()
    manager = swarm({"LocalNodeState": "active", "ControlAvailable": True, "Nodes": 3, "NodeID": "n1"})
    assert manager.check() == "swarm manager of 3 node(s) (node n1)"


@pytest.mark.usefixtures("cli_process")
def test_the_warm_pool_is_refused_on_swarm_before_anything_starts(tmp_path: Path, capsys) -> None:
    from manager.cli import main

    root = tmp_path / "root"
    assert main(["--root", str(root), "--backend", "swarm", "pool", "-n", "1"]) == 2
    assert "starts every worker cold; run the warm pool with --backend docker" in capsys.readouterr().err
    assert not root.exists()  # nothing was prepared, no gateway started
