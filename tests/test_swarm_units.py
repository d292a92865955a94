"""The Swarm backend's pure parts: service names, reading Swarm task states, the swarm check."""

from __future__ import annotations

from pathlib import Path

import pytest

from manager.backends.swarm import SERVICE_NAME, Job, SwarmBackend, SwarmNotReady, service_name
from manager.config import ManagerSettings


@pytest.mark.parametrize("task_id", ["task-001", "a.b", "a_b", "A" * 64, "x.y_z-1"])
def test_every_task_id_gets_a_valid_service_name_of_its_own(task_id: str) -> None:
    name = service_name(task_id, 12)
    assert SERVICE_NAME.match(name) and len(name) <= 63 and name.endswith("-attempt-12")
    assert service_name("task-001", 1) == "worker-task-001-attempt-1"
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
    settings = ManagerSettings(root=tmp_path, backend="swarm", volume=str(tmp_path))
    inactive = SwarmBackend(settings, client=_Engine({"LocalNodeState": "inactive"}))
    with pytest.raises(SwarmNotReady, match=r"not a swarm manager \(swarm: inactive\); run 'docker swarm init'"):
        inactive.check_swarm()
    worker = SwarmBackend(settings, client=_Engine({"LocalNodeState": "active", "ControlAvailable": False}))
    with pytest.raises(SwarmNotReady, match=r"\(a worker node\)"):
        worker.check_swarm()
    manager = SwarmBackend(settings, client=_Engine({"LocalNodeState": "active", "ControlAvailable": True, "Nodes": 3, "NodeID": "n1"}))
    assert manager.check_swarm() == "swarm manager of 3 node(s) (node n1)"
