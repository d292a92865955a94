"""The manager's settings, resolved in one place: explicit option, then environment, then
detection (as watchfiles does). Commands build one :class:`ManagerSettings` and pass it down."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field

from orchestration_protocol import Layout, contract, default_root
from orchestration_protocol.docstrings import describe_fields
from orchestration_protocol.models import DEFAULT_MAX_REPAIRS

from .errors import BadInput
from .profiles import WORKER_IMAGE_ENV
from .profiles import worker_image as default_worker_image

if TYPE_CHECKING:
    from .backends.config import EngineConfig

BackendName = Literal["docker", "swarm", "slurm", "local", "stub"]
GatewayMode = Literal["managed", "external"]

BACKEND_ENV = "ORCHESTRATOR_BACKEND"
VOLUME_ENV = "ORCHESTRATOR_VOLUME"
NETWORK_ENV = "ORCHESTRATOR_NETWORK"
BUDGET_ENV = "ORCHESTRATOR_BUDGET_USD"
MAX_REPAIRS_ENV = "ORCHESTRATOR_MAX_REPAIRS"
"""Repair rounds a failing check gets when the task does not say (default 2)."""
"""The fleet budget in US dollars that ``run`` and ``dispatch`` set when ``--budget`` is not given."""
SIMULATE_ENV = "ORCHESTRATOR_SIMULATE"
"""``1`` makes every spawning command simulate (run.sh --simulate sets it for the manager)."""
GATEWAY_ENV = "ORCHESTRATOR_GATEWAY"
"""``external``: the gateway is run by someone else (the Compose stack's ``gateway`` service);
commands check that it answers and never start one, nor the scripted model. Default ``managed``."""
WORKER_COMMAND_ENV = "ORCHESTRATOR_WORKER_COMMAND"
"""The local engine's worker command (split as a shell would)."""
DOCKER_HOST_ENV = "DOCKER_HOST"
SLURM_RUNTIME_ENV = "ORCHESTRATOR_SLURM_RUNTIME"
"""``docker`` (default) or ``podman``: what starts a SLURM job's worker container on its node."""
REMOVE_ENDED_ENV = "ORCHESTRATOR_REMOVE_ENDED_AFTER_S"
"""Seconds after its result before an ended worker is removed (``never``: keep them)."""
ALIVE_FILE_ENV = "ORCHESTRATOR_ALIVE_FILE"
"""A file ``dispatch`` touches on every pass of its loop, for a healthcheck to judge."""
PROFILES_ENV = "ORCHESTRATOR_PROFILES"
"""The profiles file, when ``--profiles`` is not given."""
UPSTREAM_ENV = "ANTHROPIC_BASE_URL"
"""The model API the gateway forwards to (Anthropic's when unset)."""
WORKER_FORWARDED_ENV = ("GIT_USER_NAME", "GIT_USER_EMAIL", *contract.LIMIT_ENV)
"""Forwarded to workers beside the model settings: the identity of their commits and the
limits on what an attempt may write (change size, log and output bytes)."""
GATEWAY_PASSED_ENV = (
    "AWS_REGION", "AWS_DEFAULT_REGION", "GATEWAY_BEDROCK_UPSTREAM", "GATEWAY_VERTEX_UPSTREAM",
    "GATEWAY_IDLE_STOP_S",
)
"""Forwarded to the gateway this manager starts: the cloud region and upstreams, and how long
it waits idle before it stops itself."""
GATEWAY_SIMULATION_ENV = ("GATEWAY_IDLE_STOP_S",)
"""Of those, forwarded in simulation too (where the upstream is the scripted model)."""
MODEL_SWITCHES = ("CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX", "ANTHROPIC_BASE_URL")
"""Settings by which Claude Code reaches a model without a token or key of its own."""
DEFAULT_VOLUME = "orchestration-volume"
CONTAINER_ROOT = Path("/orchestration")
"""Where the volume is mounted in worker containers."""


class ManagerSettings(BaseModel):
    """Everything commands need besides their own arguments."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True)

    root: Path
    """The orchestration root as this process sees it."""
    backend: BackendName = "docker"
    """Where workers run: Docker containers, Swarm jobs (``swarm``), SLURM batch jobs that start
    the same containers on their nodes (``slurm``), processes on this host
    (``local``), or threads of this process that keep the protocol (``stub``, for tests)."""
    volume: str | None = None
    """What workers mount at /orchestration: a named volume, or an absolute host path; None to
    find out from Docker (the mount this manager's container has at the root, else the root's
    own path)."""
    network: str | None = None
    """Docker network the gateway joins for workers' allowed hosts (``--network``, else
    ``$ORCHESTRATOR_NETWORK``); None for the profiles' own."""
    configured_network: str | None = None
    """The network the person configured (``$ORCHESTRATOR_NETWORK``): ``--network`` may name
    only it or a profile's network, so an agent cannot choose one."""
    repo_url: str | None = None
    """Repository for tasks that name none (``$REPO_URL``)."""
    repo_branch: str | None = None
    """Branch for tasks that name none (``$REPO_BRANCH``)."""
    lease_s: float | None = Field(default=None, gt=0)
    """Lease given to workers (``$ORCHESTRATOR_LEASE_S``); None for the worker's default."""
    heartbeat_s: float | None = Field(default=None, gt=0)
    """Heartbeat interval given to workers; None for the worker's default."""
    max_repairs: int = Field(default=DEFAULT_MAX_REPAIRS, ge=0, le=20)
    """Repair rounds a task whose check fails gets when its own ``max_repairs`` is unset
    (``$ORCHESTRATOR_MAX_REPAIRS``, default 2)."""
    simulate: bool = False
    """Point workers at the scripted model instead of a real one."""
    profiles_path: Path | None = None
    """An explicit profiles file (``--profiles``)."""
    mounts: list[str] = Field(default_factory=list)
    """Extra bind mounts for every worker, beside the profile's."""
    gateway: GatewayMode = "managed"
    """``managed``: commands that spawn start this root's gateway (and the scripted model when
    simulating); ``external``: someone else runs it (``$ORCHESTRATOR_GATEWAY``), it is only
    checked."""
    alive_file: Path | None = None
    """Touched by ``dispatch`` on every pass (``$ORCHESTRATOR_ALIVE_FILE``); None for none."""
    remove_ended_after_s: float | None = Field(default=600.0, ge=0)
    """Seconds after its attempt's result before an ended worker (container, job) is removed,
    its own last output kept in the volume (``$ORCHESTRATOR_REMOVE_ENDED_AFTER_S``); None
    (``never``) keeps them for ``orchestrator cleanup``."""
    budget_usd: float | None = Field(default=None, gt=0)
    """The fleet budget ``run`` and ``dispatch`` set (``--budget``, ``$ORCHESTRATOR_BUDGET_USD``):
    the most all tasks together may spend from then on; None to leave the budget as it is."""
    upstream: str | None = None
    """The model API the gateway forwards to (``$ANTHROPIC_BASE_URL``); None for Anthropic's."""
    worker_env: dict[str, str] = Field(default_factory=dict)
    """Non-secret settings forwarded from this environment to every worker: the model settings
    (``PASSTHROUGH_ENV``) and the git identity (``WORKER_FORWARDED_ENV``)."""
    gateway_env: dict[str, str] = Field(default_factory=dict)
    """Forwarded from this environment to the gateway it starts (``GATEWAY_PASSED_ENV``)."""
    model_switches: list[str] = Field(default_factory=list)
    """Which of ``MODEL_SWITCHES`` are set: ways to a model without a token or key."""

    worker_image: str = Field(default_factory=default_worker_image)
    """The generic worker image (``$ORCHESTRATOR_WORKER_IMAGE``), which also runs the gateway
    and the scripted model on Docker."""
    worker_command: tuple[str, ...] | None = None
    """The local engine's worker command (``$ORCHESTRATOR_WORKER_COMMAND``); None to find
    ``orchestrator-worker``."""
    docker_host: str | None = None
    """``$DOCKER_HOST`` (docker-py reads it itself; named in the sentences of engine errors)."""
    slurm_runtime: Literal["docker", "podman"] = "docker"
    """The container runtime of the SLURM engine's nodes (``$ORCHESTRATOR_SLURM_RUNTIME``)."""

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    def engine_config(self) -> EngineConfig:
        """The config of the engine ``backend`` names, from these settings."""
        from .backends.config import (
            DockerConfig,
            LocalConfig,
            SlurmConfig,
            StubConfig,
            SwarmConfig,
        )

        if self.backend == "local":
            return LocalConfig(root=self.root, worker_command=self.worker_command)
        if self.backend == "stub":
            return StubConfig(root=self.root)
        docker = {
            "root": self.root,
            "volume": self.volume,
            "network": self.network,
            "worker_image": self.worker_image,
            "docker_host": self.docker_host,
        }
        if self.backend == "swarm":
            return SwarmConfig(**docker)
        if self.backend == "slurm":
            return SlurmConfig(**docker, runtime=self.slurm_runtime)
        return DockerConfig(**docker)


def _env_float(env: Mapping[str, str], name: str) -> float | None:
    value = env.get(name)
    try:
        return float(value) if value else None
    except ValueError:
        return None


def positive_usd(value: float | None, name: str) -> float | None:
    """``value`` unless it is zero or negative (BadInput in one sentence naming ``name``)."""
    if value is not None and not 0 < value < float("inf"):
        raise BadInput(
            f"{name} must be more than 0 US dollars (got {value:g}); give e.g. {name} 5."
        )
    return value


def budget_from_env(env: Mapping[str, str]) -> float | None:
    """``$ORCHESTRATOR_BUDGET_USD`` as dollars; BadInput when it is set but not a positive number
    (a typo must not mean spending without a limit)."""
    value = env.get(BUDGET_ENV, "").strip()
    if not value:
        return None
    try:
        usd = float(value)
    except ValueError:
        usd = float("nan")
    if not 0 < usd < float("inf"):
        raise BadInput(
            f"${BUDGET_ENV}={value!r} is not a positive number of US dollars; fix or unset it."
        )
    return usd


def max_repairs_from_env(env: Mapping[str, str]) -> int:
    """``$ORCHESTRATOR_MAX_REPAIRS`` (default 2); BadInput unless it is a whole number 0-20."""
    value = env.get(MAX_REPAIRS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_REPAIRS
    if not value.isdigit() or int(value) > 20:
        raise BadInput(
            f"${MAX_REPAIRS_ENV}={value!r} is not a number of repair rounds from 0 to 20; fix or unset it."
        )
    return int(value)


def gateway_from_env(env: Mapping[str, str]) -> GatewayMode:
    """``$ORCHESTRATOR_GATEWAY`` (``managed`` when unset); BadInput for another value."""
    value = env.get(GATEWAY_ENV, "").strip().lower() or "managed"
    if value not in ("managed", "external"):
        raise BadInput(
            f"${GATEWAY_ENV}={value!r} is not managed or external; fix or unset it."
        )
    return "external" if value == "external" else "managed"


def resolve_settings(
    root: Path | None = None,
    *,
    backend: str | None = None,
    volume: str | None = None,
    network: str | None = None,
    repo_url: str | None = None,
    repo_branch: str | None = None,
    simulate: bool = False,
    profiles_path: Path | None = None,
    mounts: list[str] | None = None,
    budget_usd: float | None = None,
    env: Mapping[str, str] | None = None,
) -> ManagerSettings:
    """Settings from explicit values, then the environment (``env``, default this process's),
    then detection: the one place the manager reads its environment."""
    env = os.environ if env is None else env
    root = (root or default_root()).absolute()
    backend = backend or env.get(BACKEND_ENV) or "docker"
    if backend not in get_args(BackendName):
        *others, last = (f"--backend {name}" for name in get_args(BackendName))
        choices = f"{', '.join(others)} or {last}"
        raise BadInput(f"Unknown backend {backend!r}; use {choices}.")
    return ManagerSettings(
        root=root,
        backend=cast(BackendName, backend),
        volume=volume or env.get(VOLUME_ENV) or None,
        network=network or env.get(NETWORK_ENV) or None,
        configured_network=env.get(NETWORK_ENV) or None,
        repo_url=repo_url or env.get(contract.ENV_REPO_URL) or None,
        repo_branch=repo_branch or env.get(contract.ENV_REPO_BRANCH) or None,
        lease_s=_env_float(env, contract.ENV_LEASE_S),
        heartbeat_s=_env_float(env, contract.ENV_HEARTBEAT_S),
        max_repairs=max_repairs_from_env(env),
        simulate=simulate or env.get(SIMULATE_ENV, "").lower() in ("1", "true", "yes"),
        profiles_path=profiles_path or (Path(env[PROFILES_ENV]) if env.get(PROFILES_ENV) else None),
        mounts=mounts or [],
        gateway=gateway_from_env(env),
        alive_file=Path(env[ALIVE_FILE_ENV]) if env.get(ALIVE_FILE_ENV) else None,
        budget_usd=positive_usd(budget_usd, "--budget") or budget_from_env(env),
        upstream=env.get(UPSTREAM_ENV) or None,
        worker_env=_present(env, (*contract.PASSTHROUGH_ENV, *WORKER_FORWARDED_ENV)),
        gateway_env=_present(env, GATEWAY_PASSED_ENV),
        model_switches=list(_present(env, MODEL_SWITCHES)),
        worker_command=tuple(shlex.split(command)) if (command := env.get(WORKER_COMMAND_ENV)) else None,
        docker_host=env.get(DOCKER_HOST_ENV) or None,
        worker_image=env.get(WORKER_IMAGE_ENV) or "claude-worker",
        slurm_runtime=slurm_runtime_from_env(env),
        remove_ended_after_s=remove_ended_from_env(env),
    )


def _present(env: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: env[name] for name in names if env.get(name)}


def slurm_runtime_from_env(env: Mapping[str, str]) -> Literal["docker", "podman"]:
    """``$ORCHESTRATOR_SLURM_RUNTIME`` (``docker`` when unset); BadInput for another value."""
    value = env.get(SLURM_RUNTIME_ENV, "").strip().lower() or "docker"
    if value not in ("docker", "podman"):
        raise BadInput(f"${SLURM_RUNTIME_ENV}={value!r} is not docker or podman; fix or unset it.")
    return "podman" if value == "podman" else "docker"


def remove_ended_from_env(env: Mapping[str, str]) -> float | None:
    """``$ORCHESTRATOR_REMOVE_ENDED_AFTER_S`` (600 when unset, None for ``never``); BadInput
    for anything but a number of at least 0 or ``never``."""
    value = env.get(REMOVE_ENDED_ENV, "").strip().lower()
    if not value:
        return 600.0
    if value == "never":
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise BadInput(
            f"${REMOVE_ENDED_ENV}={value!r} is not a number of seconds or 'never'; fix or unset it."
        )
    return seconds
