"""The spawner interface: where worker processes run. One implementation per engine.

A backend starts one worker for one attempt of one task, lists the workers of its orchestration
root (running or ended; after a manager restart too, from labels or records), reads their output,
stops and removes them, and reports exits as they happen. It knows nothing of task states: that
is the protocol's job (``orchestration_protocol.state``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
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


def worker_name(task_id: str) -> str:
    """The name of the worker of a task's current attempt: ``worker-<task-id>``."""
    return f"worker-{task_id}"


def archived_worker_name(task_id: str, attempt: int | None) -> str:
    """The name an earlier attempt's ended worker is kept under (its logs stay readable)."""
    return f"worker-{task_id}.attempt-{attempt or 0}"


@dataclass(frozen=True)
class SpawnRequest:
    """One attempt of one task to start. A worker gets no secret: the gateway holds them."""

    task_id: str
    attempt: int
    profile: Profile
    env: dict[str, str]
    """Non-secret environment (may appear in ``docker inspect``)."""
    mounts: tuple[str, ...] = ()
    force: bool = False
    """Claim even when ``max_attempts`` is used up (``task retry``)."""

    @property
    def worker_args(self) -> list[str]:
        """The worker's arguments (after the ``orchestrator-worker`` command)."""
        return ["--task", self.task_id, *(["--force"] if self.force else [])]

    @property
    def name(self) -> str:
        return worker_name(self.task_id)


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


class Backend(ABC):
    """Runs workers for one orchestration root."""

    name: str = "base"

    def require_engine(self) -> None:  # noqa: B027 - most engines are ready if they answer
        """Raise an EnvironmentNotReady error (one sentence with the fix) unless this engine can
        run workers at all; checked before anything is started for them."""

    @abstractmethod
    def preflight(self, profile: Profile) -> None:
        """Raise an EnvironmentNotReady error (one sentence with the fix) if ``profile`` cannot
        run here now."""

    @abstractmethod
    def spawn(self, request: SpawnRequest) -> WorkerRecord:
        """Start the worker; an ended worker of the same name is kept under an archived name."""

    @abstractmethod
    def workers(self) -> list[WorkerRecord]:
        """Every worker of this root, running or ended."""

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

    # --- what runs beside the workers ----------------------------------------------------------

    @abstractmethod
    def start_scripted_model(self) -> Simulation:
        """Make sure the scripted model runs (simulation) and answers; how the gateway reaches it."""

    @abstractmethod
    def stop_scripted_model(self) -> bool:
        """Stop the scripted model if this root started it; True when something was stopped."""

    @abstractmethod
    def start_gateway(self, spec: GatewaySpec) -> None:
        """Make sure this root's gateway runs as ``spec`` says, and answers on its sockets."""

    @abstractmethod
    def stop_gateway(self) -> bool:
        """Stop this root's gateway; True when one was running."""

    def connect_gateway(self, network: str) -> None:  # noqa: B027 - engines without networks
        """Let the gateway reach the hosts on ``network`` (where a profile's allowed hosts are)."""

    # --- the root, the doctor, the hints a person reads ---------------------------------------

    def prepare_root(self, layout: Layout) -> None:  # noqa: B027 - nothing to do by default
        """Make the root usable by this backend's workers (modes for another uid, say)."""

    @abstractmethod
    def doctor_checks(self, images: dict[str, bool]) -> list[Check]:
        """This engine's checks for ``orchestrator doctor``: the engine, each image (True: the
        default profile needs it), and whether workers can use the root."""

    def worker_env(self, worker: str, profile: Profile) -> dict[str, str]:
        """What this engine adds to a worker's environment (under the contract's names)."""
        return {}

    def tidy(self) -> None:  # noqa: B027 - most engines leave nothing behind
        """Remove what this engine's workers leave besides themselves (``cleanup``)."""

    def follow_hint(self, worker: str, task_id: str) -> str:
        """The command a person runs to follow a worker's output."""
        return f"orchestrator logs {task_id} -f"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
