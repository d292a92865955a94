"""The Swarm engine: workers as ``replicated-job`` services (``workers``); the gateway and the
scripted model as containers of the manager's engine (the Docker engine's ``services``, by
composition); the Docker checks plus the swarm's own (``doctor``)."""

from __future__ import annotations

from typing import Any

from orchestration_protocol import Layout

from ...profiles import Profile
from ..base import Backend, Doctor
from ..config import SwarmConfig
from ..docker.connection import DockerConnection
from ..docker.doctor import DockerDoctor, DockerNames
from ..docker.services import DockerServices
from ..services import Check, run_check
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

    def checks(self, images: dict[str, bool]) -> list[Check]:
        checks = self.docker_doctor.checks(images)
        if checks and checks[0].ok:  # the engine answers: is it a swarm manager?
            checks.insert(1, run_check("swarm", self.swarm.check))
        return checks

    def prepare_root(self, layout: Layout) -> None:
        self.docker_doctor.prepare_root(layout)


def make_swarm(config: SwarmConfig, client: Any = None) -> Backend:
    """The Swarm engine for ``config``'s root (``client``: an engine client, for tests)."""
    docker = DockerConnection(config, client)
    swarm = SwarmManager(docker)
    return Backend(
        name="swarm",
        workers=SwarmWorkers(docker, swarm),
        services=DockerServices(docker),
        doctor=SwarmDoctor(docker, swarm),
        names=SwarmNames(docker),
        closers=(docker.close,),
    )


__all__ = ["SERVICE_NAME", "Job", "SwarmManager", "SwarmNotReady", "SwarmWorkers", "make_swarm", "service_name"]
