"""The Docker engine: workers as hardened containers (``workers``), the gateway and scripted
model as containers (``services``), the engine's checks (``doctor``), scoped names (``names``)."""

from __future__ import annotations

from typing import Any

from ..base import Backend
from ..config import DockerConfig
from .connection import DockerConnection
from .doctor import DockerDoctor, DockerNames
from .services import DockerServices
from .workers import DockerWorkers


def make_docker(config: DockerConfig, client: Any = None) -> Backend:
    """The Docker engine for ``config``'s root (``client``: an engine client to use instead of
    connecting, for tests)."""
    docker = DockerConnection(config, client)
    return Backend(
        name="docker",
        workers=DockerWorkers(docker),
        services=DockerServices(docker),
        doctor=DockerDoctor(docker),
        names=DockerNames(docker),
        closers=(docker.close,),
    )


__all__ = ["DockerConnection", "DockerWorkers", "make_docker"]
