"""What an engine shows running, per orchestration root, said without naming the engine: each
backend lists its engine's things of every root it can see (``Doctor.running``), and
``orchestrator doctor`` reads each root's files beside them (``manager.views.running``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from orchestration_protocol.docstrings import describe_fields

from .base import WorkerRecord


class Kind(StrEnum):
    """What a running thing is."""

    GATEWAY = "gateway"
    """The root's gateway (it stops itself when idle)."""
    SCRIPTED_MODEL = "scripted-model"
    """The root's scripted model (simulation)."""
    WORKER = "worker"
    """A task's worker."""
    POOL_WORKER = "pool-worker"
    """A warm pool's worker (idle, or busy with a task)."""
    OTHER = "other"
    """Anything else with the root mounted: a Compose service, a manager container."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True, frozen=True)


class RunningThing(_Model):
    """One running container, service, job or process of a root."""

    kind: Kind
    """What it is."""
    name: str
    """Its name on the engine (container, service, job or process record)."""
    started_at: datetime | None = None
    """When it started (when it was created, where the engine says no more)."""
    task_id: str | None = None
    """The task it works on (a task's worker; a pool worker's comes from the root's files)."""
    pool: str | None = None
    """The warm pool it belongs to (a pool worker)."""
    service: str | None = None
    """What else it is (``compose <project>/<service>``, an image), for :attr:`Kind.OTHER`."""
    idle_stop_s: float | None = None
    """A gateway's ``GATEWAY_IDLE_STOP_S`` as it was started with; None: the gateway's default."""


class EngineRoot(_Model):
    """Everything an engine runs for one root."""

    root: str
    """The root as the engine labels it (``volume:NAME``, ``bind:/path``, or a path)."""
    scope: str
    """The root's short id in the engine's names (empty where the engine holds one root)."""
    files: Path | None
    """Where this process can read the root's files; None when it cannot (another named
    volume, seen from inside a container)."""
    current: bool
    """Whether it is the root of this command (``--root``)."""
    things: tuple[RunningThing, ...]
    """What runs for it."""
    stop_hint: str
    """The command that stops and removes all of it."""


def worker_things(workers: list[WorkerRecord]) -> tuple[RunningThing, ...]:
    """The running ones of a backend's ``workers.all()``, as running things."""
    return tuple(
        RunningThing(
            kind=Kind.POOL_WORKER if worker.pool else Kind.WORKER,
            name=worker.name,
            started_at=worker.created_at,
            task_id=worker.task_id or None,
            pool=worker.pool,
        )
        for worker in workers
        if worker.running
    )


def cleanup_hint(root: Path, backend: str, *extra: str) -> str:
    """``orchestrator cleanup`` with the options that stop every worker, the gateway and the
    scripted model of ``root`` (on ``backend``, given unless it is the default)."""
    engine = [] if backend == "docker" else ["--backend", backend]
    words = ["orchestrator", "--root", str(root), *engine, *extra, "cleanup", "--all", "--gateway",
             "--simulation"]
    return " ".join(words)
