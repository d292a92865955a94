"""Where workers run, one folder per engine: ``docker`` (default), ``swarm`` (Swarm jobs),
``local`` (processes on this host), ``stub`` (threads of this process, for tests). Each is a
:class:`Backend` of narrow parts: ``workers``, ``services``, ``doctor``, ``names``."""

from __future__ import annotations

from .base import (
    Backend,
    Doctor,
    ExitInfo,
    IdleSpawnRequest,
    Names,
    Services,
    SpawnRequest,
    WorkerRecord,
    Workers,
    archived_worker_name,
    root_scope,
    worker_name,
)
from .config import (
    DockerConfig,
    EngineConfig,
    LocalConfig,
    SlurmConfig,
    StubConfig,
    SwarmConfig,
)


def make_backend(config: EngineConfig) -> Backend:
    """The engine ``config`` names, for its root."""
    if isinstance(config, LocalConfig):
        from .local import make_local

        return make_local(config)
    if isinstance(config, StubConfig):
        from .stub import make_stub

        return make_stub(config)
    if isinstance(config, SlurmConfig):
        from .slurm import make_slurm

        return make_slurm(config)
    if isinstance(config, SwarmConfig):
        from .swarm import make_swarm

        return make_swarm(config)
    from .docker import make_docker

    return make_docker(config)


__all__ = [
    "Backend",
    "DockerConfig",
    "Doctor",
    "EngineConfig",
    "ExitInfo",
    "IdleSpawnRequest",
    "LocalConfig",
    "Names",
    "Services",
    "SlurmConfig",
    "SpawnRequest",
    "StubConfig",
    "SwarmConfig",
    "WorkerRecord",
    "Workers",
    "archived_worker_name",
    "make_backend",
    "root_scope",
    "worker_name",
]
