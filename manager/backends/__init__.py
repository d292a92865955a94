"""Where workers run: ``docker`` (default), ``swarm`` (Swarm jobs) or ``local`` (processes on
this host)."""

from __future__ import annotations

from ..config import ManagerSettings
from .base import Backend, ExitInfo, SpawnRequest, WorkerRecord, archived_worker_name, worker_name


def make_backend(settings: ManagerSettings) -> Backend:
    """The backend named in ``settings``."""
    if settings.backend == "local":
        from .local import LocalBackend

        return LocalBackend(settings)
    if settings.backend == "swarm":
        from .swarm import SwarmBackend

        return SwarmBackend(settings)
    from .docker import DockerBackend

    return DockerBackend(settings)


__all__ = [
    "Backend",
    "ExitInfo",
    "SpawnRequest",
    "WorkerRecord",
    "archived_worker_name",
    "make_backend",
    "worker_name",
]
