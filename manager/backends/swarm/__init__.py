"""The Swarm engine: workers as ``replicated-job`` services placed on any node (``workers``); a
gateway on every node (a ``global`` service) and the scripted model as a service (``services``);
the Docker checks plus the swarm's own and which node lacks which image (``doctor``)."""

from __future__ import annotations

from typing import Any

from orchestration_protocol import Layout

from ...profiles import Profile
from ..base import Backend, Doctor
from ..config import SwarmConfig
from ..docker.connection import DockerConnection
from ..docker.doctor import DockerDoctor, DockerNames
from ..docker.running import running_roots
from ..running import EngineRoot
from ..services import Check, run_check
from .images import missing_sentence, probe_images
from .services import SwarmServices
from .workers import SERVICE_NAME, Job, SwarmManager, SwarmNotReady, SwarmWorkers, service_name


class SwarmNames(DockerNames):
    """As the Docker engine's; a job's output is followed through the orchestrator."""

    def follow_hint(self, worker: str, task_id: str) -> str:
        return f"orchestrator logs {task_id} -f"


class SwarmDoctor(Doctor):
    """The Docker engine's checks, and that this engine manages an active swarm."""

    def __init__(self, docker: DockerConnection, swarm: SwarmManager) -> None:
        self.docker_doctor = DockerDoctor(docker)
        self.swarm = swarm

    def require_engine(self) -> None:
        self.swarm.check()

    def preflight(self, profile: Profile) -> None:
        self.swarm.check()
        self.docker_doctor.preflight(profile)

    def running(self) -> list[EngineRoot]:
        """The manager's node's containers (the gateway, and the workers' tasks placed here)."""
        return running_roots(self.docker_doctor.docker, "swarm")

    def checks(self, images: dict[str, bool]) -> list[Check]:
        checks = self.docker_doctor.checks(images)
        if checks and checks[0].ok:  # the engine answers: is it a swarm manager?
            swarm = run_check("swarm", self.swarm.check)
            checks.insert(1, swarm)
            if swarm.ok:
                checks.insert(2, self.node_images(images))
        return checks

    def node_images(self, images: dict[str, bool]) -> Check:
        """Whether every ready node has every image the default profile needs (a probe job per
        node and image); the others are named but do not fail the check."""
        found = probe_images(self.swarm.docker.client, self.swarm.docker.root_label, list(images))
        needed = [f for f in found if images.get(f.image)]
        problem = missing_sentence(needed)
        if problem is not None:
            return Check("node images", False, problem)
        nodes = len({f.node for f in found})
        message = f"{nodes} node(s) have {', '.join(i for i, need in images.items() if need)}"
        if other := missing_sentence([f for f in found if not images.get(f.image)]):
            message += f" (for other profiles: {other.split(': load')[0]})"
        return Check("node images", True, message)

    def prepare_root(self, layout: Layout) -> None:
        self.docker_doctor.prepare_root(layout)


def make_swarm(config: SwarmConfig, client: Any = None) -> Backend:
    """The Swarm engine for ``config``'s root (``client``: an engine client, for tests)."""
    docker = DockerConnection(config, client)
    swarm = SwarmManager(docker)
    return Backend(
        name="swarm",
        workers=SwarmWorkers(docker, swarm),
        services=SwarmServices(docker),
        doctor=SwarmDoctor(docker, swarm),
        names=SwarmNames(docker),
        closers=(docker.close,),
    )


__all__ = ["SERVICE_NAME", "Job", "SwarmManager", "SwarmNotReady", "SwarmWorkers", "make_swarm", "service_name"]
