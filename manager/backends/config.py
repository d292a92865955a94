"""One pydantic config per engine, joined in a tagged union on ``type`` (as SWE-ReX's deployment
configs): :func:`manager.backends.make_backend` takes one and builds that engine. The manager's
settings produce it (``ManagerSettings.engine_config``); no engine reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestration_protocol.docstrings import describe_fields

StubBehaviour = Literal["succeed", "fail", "crash", "oom", "slow", "check_fail", "check_pass"]
"""What a stub worker does with its task: publish success, publish a failed result, die without
a result (exit 137, as ``docker kill``), die as the kernel's OOM killer ends it (137, OOM),
succeed after ``slow_s``, or end with its check failing (a failed result whose ``check`` did not
pass, as a real worker's) or passing (a success with a passed ``check``)."""


class _EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True, frozen=True)

    root: Path
    """The orchestration root as this process sees it."""


class _DockerFields(_EngineConfig):
    volume: str | None = None
    """What workers mount at /orchestration: a named volume, or an absolute host path; None to
    find out from Docker (the mount this manager's container has at the root, else the root's
    own path)."""
    network: str | None = None
    """The Docker network the scripted model and the gateway share; None for this root's own
    (``orchestrator-net-<root>``)."""
    worker_image: str = "claude-worker"
    """The generic worker image, which also runs the gateway and the scripted model."""
    docker_host: str | None = None
    """``$DOCKER_HOST`` as given (None: the default socket); docker-py reads it itself, this is
    for the sentences that say which engine did not answer."""


class DockerConfig(_DockerFields):
    """Workers as hardened containers of one Docker engine."""

    type: Literal["docker"] = "docker"
    """The engine: ``docker``."""


class SwarmConfig(_DockerFields):
    """Workers as Swarm ``replicated-job`` services; the gateway and the scripted model as
    containers of the manager's engine."""

    type: Literal["swarm"] = "swarm"
    """The engine: ``swarm``."""


ContainerRuntime = Literal["docker", "podman"]
"""The container runtime on a SLURM node that starts the worker's container."""


class SlurmConfig(_DockerFields):
    """Workers as SLURM batch jobs, each starting the hardened worker container on its node
    with the node's container runtime; the gateway and the scripted model as containers of
    this host's Docker engine (the nodes see the root at the same host path)."""

    type: Literal["slurm"] = "slurm"
    """The engine: ``slurm``."""
    runtime: ContainerRuntime = "docker"
    """What starts the worker's container on the node: ``docker`` or ``podman`` (as root)."""
    partition: str | None = None
    """The partition jobs are submitted to; None for the cluster's default."""
    time_margin_min: int = Field(default=5, ge=0)
    """Minutes added to a task's ``timeout_s`` (rounded up to minutes) for the job's
    ``--time``: the worker ends the attempt at its timeout, SLURM only if it could not."""
    poll_s: float = Field(default=1.0, gt=0)
    """How often ``watch_exits`` asks ``squeue``/``sacct`` which jobs ended."""


class LocalConfig(_EngineConfig):
    """Workers as supervised processes on this host."""

    type: Literal["local"] = "local"
    """The engine: ``local``."""
    worker_command: tuple[str, ...] | None = None
    """The worker command (``$ORCHESTRATOR_WORKER_COMMAND``, split); None for
    ``orchestrator-worker`` beside this Python or on the PATH."""


class StubConfig(_EngineConfig):
    """Workers as threads of this process that keep the real protocol (claim, heartbeat,
    result) against the real files, in milliseconds; no Docker, no agent, no repository."""

    type: Literal["stub"] = "stub"
    """The engine: ``stub``."""
    behaviours: dict[str, tuple[StubBehaviour, ...]] = Field(default_factory=dict)
    """Task id -> what the worker of each attempt does (attempt 1 the first; the last goes on
    for later attempts); tasks not named here use ``default``."""
    default: StubBehaviour = "succeed"
    """What a worker does with a task that ``behaviours`` does not name."""
    slow_s: float = Field(default=2.0, ge=0)
    """How long a ``slow`` worker works before it succeeds (it heartbeats meanwhile)."""
    heartbeat_s: float = Field(default=0.05, gt=0)
    """How often a stub worker renews its lease."""
    lease_s: float = Field(default=30.0, gt=0)
    """The lease a stub worker claims with."""


EngineConfig = Annotated[
    DockerConfig | SwarmConfig | SlurmConfig | LocalConfig | StubConfig,
    Field(discriminator="type"),
]
"""Any engine's config, told apart by ``type``."""
EngineName = Literal["docker", "swarm", "slurm", "local", "stub"]
