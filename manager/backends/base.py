"""The engine interface: where worker processes run, in narrow parts. One folder per engine.

A backend starts one worker for one attempt of one task, lists the workers of its orchestration
root (running or ended; after a manager restart too, from labels or records), reads their output,
stops and removes them, and reports exits as they happen. It knows nothing of task states: that
is the protocol's job (``orchestration_protocol.state``).
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orchestration_protocol import Layout

from ..profiles import Profile
from .services import Check, GatewaySpec, Simulation

ROLE_WORKER = "worker"
LABEL_TASK = "orchestrator.task"
LABEL_ROLE = "orchestrator.role"
LABEL_ATTEMPT = "orchestrator.attempt"
LABEL_ROOT = "orchestrator.root"
LABEL_PROFILE = "orchestrator.profile"
LABEL_POOL = "orchestrator.pool"
"""On a warm pool's worker, instead of ``orchestrator.task``: the pool it belongs to."""


def root_scope(root_label: str) -> str:
    """The short id of a root in engine names: 8 hex digits of its label's hash, so two roots
    (volumes or paths) never share a container, service or network name."""
    return hashlib.sha256(root_label.encode()).hexdigest()[:8]


def worker_name(task_id: str, scope: str = "") -> str:
    """The name of the worker of a task's current attempt: ``worker-<scope>-<task-id>``
    (``worker-<task-id>`` on an engine that holds one root only, such as ``local``)."""
    return f"worker-{scope}-{task_id}" if scope else f"worker-{task_id}"


def archived_worker_name(name: str, attempt: int | None) -> str:
    """The name an earlier attempt's ended worker ``name`` is kept under (its logs stay
    readable): ``<name>.attempt-<n>``."""
    return f"{name}.attempt-{attempt or 0}"


def pool_worker_name(pool: str, token: str, scope: str = "") -> str:
    """A warm pool worker's name: ``pool-<scope>-<pool>-<token>``."""
    return f"pool-{scope}-{pool}-{token}" if scope else f"pool-{pool}-{token}"


@dataclass(frozen=True)
class SpawnRequest:
    """One attempt of one task to start. A worker gets no secret: the gateway holds them."""

    task_id: str
    attempt: int
    name: str
    """The worker's name (``Names.worker``): its container's, unique on the engine."""
    profile: Profile
    env: dict[str, str]
    """Non-secret environment (may appear in ``docker inspect``)."""
    mounts: tuple[str, ...] = ()
    force: bool = False
    """Claim even when ``max_attempts`` is used up (``task retry``)."""
    timeout_s: float | None = None
    """The task's wall-clock limit for one attempt (the worker enforces it); an engine with
    limits of its own (SLURM's ``--time``) sets its limit a margin above."""

    @property
    def worker_args(self) -> list[str]:
        """The worker's arguments (after the ``orchestrator-worker`` command)."""
        return ["--task", self.task_id, *(["--force"] if self.force else [])]


@dataclass(frozen=True)
class IdleSpawnRequest:
    """One warm pool worker to start: no task yet, it waits for one of its profile."""

    name: str
    """The worker's name (``Names.pool_worker``), unique on the engine."""
    pool: str
    profile: Profile
    env: dict[str, str]
    """Non-secret environment (the pool and profile included)."""
    mounts: tuple[str, ...] = ()

    worker_args = ("--warm",)
    """The worker's arguments (after the ``orchestrator-worker`` command)."""


@dataclass(frozen=True)
class WorkerRecord:
    """A worker the backend knows of."""

    name: str
    task_id: str
    attempt: int | None
    """The attempt it was started for (None when its labels do not say)."""
    running: bool
    exit_code: int | None = None
    """Its exit code once ended; None while running or when unknown."""
    created_at: datetime | None = None
    profile: str | None = None
    started: bool = True
    """False for a worker that was created but never started."""
    pool: str | None = None
    """The warm pool it belongs to; its ``task_id`` is empty until the manager resolves it
    from the pool's records (``manager.pool.with_pool_tasks``)."""

    @classmethod
    def idle_started(cls, request: IdleSpawnRequest) -> WorkerRecord:
        """The record of a warm pool worker that was started for ``request`` a moment ago."""
        return cls(
            name=request.name,
            task_id="",
            attempt=None,
            running=True,
            created_at=datetime.now(UTC),
            profile=request.profile.name,
            pool=request.pool,
        )

    @classmethod
    def just_started(cls, request: SpawnRequest) -> WorkerRecord:
        """The record of a worker that was started for ``request`` a moment ago."""
        return cls(
            name=request.name,
            task_id=request.task_id,
            attempt=request.attempt,
            running=True,
            created_at=datetime.now(UTC),
            profile=request.profile.name,
        )


@dataclass(frozen=True)
class ExitInfo:
    """How an ended worker ended, as far as the engine knows."""

    exit_code: int | None
    oom_killed: bool = False
    error: str | None = None


class Workers(ABC):
    """The workers of one root: start, list, read, stop, remove, and hear of their exits."""

    keeps_warm_pools: bool = True
    """Whether :meth:`spawn_idle` can start warm pool workers here."""

    @abstractmethod
    def spawn(self, request: SpawnRequest) -> WorkerRecord:
        """Start the worker; an ended worker of the same name is kept under an archived name."""

    @abstractmethod
    def spawn_idle(self, request: IdleSpawnRequest) -> WorkerRecord:
        """Start a warm pool worker, hardened exactly as a task's worker, with no task."""

    @abstractmethod
    def all(self) -> list[WorkerRecord]:
        """Every worker of this root, running or ended (never another root's)."""

    @abstractmethod
    def exit_info(self, name: str) -> ExitInfo:
        """How the ended worker ``name`` ended."""

    @abstractmethod
    def logs(self, name: str, *, tail: int | None = None) -> str:
        """The worker's own output (stdout and stderr), the last ``tail`` lines if given."""

    @abstractmethod
    def stop(self, name: str, timeout_s: float = 10) -> None:
        """Ask the worker to stop (SIGTERM), kill it after ``timeout_s``."""

    @abstractmethod
    def remove(self, name: str) -> None:
        """Forget an ended worker (remove its container or records)."""

    @abstractmethod
    def watch_exits(
        self, callback: Callable[[WorkerRecord], None], stop: threading.Event
    ) -> threading.Thread:
        """Start a daemon thread calling ``callback`` as each worker of this root ends."""

    def tidy(self) -> None:  # noqa: B027 - most engines leave nothing behind
        """Remove what this root's workers leave besides themselves (``cleanup``)."""


class Services(ABC):
    """What runs beside the workers: the scripted model (simulation) and the gateway."""

    @abstractmethod
    def start_scripted_model(self) -> Simulation:
        """Make sure the scripted model runs (simulation) and answers; how the gateway reaches it."""

    @abstractmethod
    def stop_scripted_model(self) -> bool:
        """Stop this root's scripted model; True when something was stopped."""

    @abstractmethod
    def start_gateway(self, spec: GatewaySpec) -> None:
        """Make sure this root's gateway runs as ``spec`` says, and answers on its sockets."""

    @abstractmethod
    def stop_gateway(self) -> bool:
        """Stop this root's gateway; True when one was running."""

    def connect_gateway(self, network: str) -> None:  # noqa: B027 - engines without networks
        """Let the gateway reach the hosts on ``network`` (where a profile's allowed hosts are)."""


class Doctor(ABC):
    """Whether this engine can run workers of this root, said in sentences with the fix."""

    def require_engine(self) -> None:  # noqa: B027 - most engines are ready if they answer
        """Raise an EnvironmentNotReady error (one sentence with the fix) unless this engine can
        run workers at all; checked before anything is started for them."""

    @abstractmethod
    def preflight(self, profile: Profile) -> None:
        """Raise an EnvironmentNotReady error (one sentence with the fix) if ``profile`` cannot
        run here now."""

    @abstractmethod
    def checks(self, images: dict[str, bool]) -> list[Check]:
        """This engine's checks for ``orchestrator doctor``: the engine, each image (True: the
        default profile needs it), and whether workers can use the root."""

    def prepare_root(self, layout: Layout) -> None:  # noqa: B027 - nothing to do by default
        """Make the root usable by this engine's workers (modes for another uid, say)."""


class Names:
    """How this engine names and addresses a root's workers; ``scope`` is the root's short id
    in every name on an engine shared by roots (empty where the engine holds one root)."""

    @property
    def scope(self) -> str:
        return ""

    def worker(self, task_id: str) -> str:
        """The name of the worker of a task's current attempt."""
        return worker_name(task_id, self.scope)

    def pool_worker(self, pool: str, token: str) -> str:
        """The name of a new warm pool worker."""
        return pool_worker_name(pool, token, self.scope)

    def worker_env(self, worker: str, profile: Profile) -> dict[str, str]:
        """What this engine adds to a worker's environment (under the contract's names)."""
        return {}

    def follow_hint(self, worker: str, task_id: str) -> str:
        """The command a person runs to follow a worker's output."""
        return f"orchestrator logs {task_id} -f"


@dataclass
class Backend:
    """One engine for one orchestration root, in narrow parts (as docker-py's
    ``client.containers``): ``workers``, ``services``, ``doctor``, ``names``."""

    name: str
    """The engine's name (``docker``, ``swarm``, ``local``, ``stub``)."""
    workers: Workers
    services: Services
    doctor: Doctor
    names: Names = field(default_factory=Names)
    closers: tuple[Callable[[], None], ...] = ()
    """Called by :meth:`close` (an engine's connection)."""

    def close(self) -> None:
        """Release connections."""
        for closer in self.closers:
            closer()
