"""One fixture, ``each_engine``, that runs the same scenario on every engine: the stub (threads
of this process, milliseconds), local processes, and the real Docker engine (marked ``docker``:
skipped without one, a failure under CI=true). The scenario creates tasks with
:meth:`EngineKit.task` (``agent: command`` tasks whose ``sleep`` a stub worker plays as
``slow``), runs the real dispatcher in a thread with :meth:`EngineKit.dispatch`, kills workers
with :meth:`EngineKit.kill` as ``docker kill`` would, and reads the files the workers wrote."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from manager.backends import Backend, StubConfig, make_backend
from manager.backends.config import StubBehaviour
from manager.backends.local import RECORDS_DIR
from manager.backends.stub import StubWorkers
from manager.config import BackendName, ManagerSettings
from manager.run.dispatch import Dispatcher, Tick
from manager.run.spawn import prepare_spawning
from orchestration_protocol import AgentKind, Layout, Task, write_task
from tests.conftest import require
from tests.gitrepo import make_remote

WORKER_IMAGE = os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker"
SLOW_S = {"stub": 0.5, "local": 4.0, "docker": 6.0, "slurm": 8.0}
"""How long a slow task works on each engine (a stub's ``slow``, a real worker's ``sleep``):
long enough to be seen running and killed."""


@dataclass
class Run:
    """A dispatcher running in a thread; :meth:`stop` ends it as a killed manager would end."""

    dispatcher: Dispatcher
    thread: threading.Thread
    halt: threading.Event
    ticks: list[Tick] = field(default_factory=list)

    def wait(self, timeout_s: float = 120) -> Tick:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the dispatcher did not settle"
        return self.ticks[-1]

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(30)


@dataclass
class EngineKit:
    """One engine for one fresh root."""

    name: str
    layout: Layout
    remote: Path
    behaviours: dict[str, tuple[StubBehaviour, ...]] = field(default_factory=dict)
    backends: list[Backend] = field(default_factory=list)
    profiles: Path | None = None
    """A profiles file (the slurm engine's asks for one CPU a worker: the node has two)."""
    remove_ended_after_s: float | None = None
    """When the dispatcher removes ended workers (None: never, so a test can read them)."""

    @property
    def settings(self) -> ManagerSettings:
        root = self.layout.root
        return ManagerSettings(
            root=root,
            backend=cast(BackendName, self.name),
            volume=str(root.resolve()) if self.name in ("docker", "slurm") else None,
            repo_url=str(self.remote),
            heartbeat_s=0.5,
            profiles_path=self.profiles,
            remove_ended_after_s=self.remove_ended_after_s,
        )

    def backend(self) -> Backend:
        """A backend for this root (one per manager, as each command makes its own)."""
        if self.name == "stub":
            backend = make_backend(
                StubConfig(root=self.layout.root, behaviours=self.behaviours, slow_s=self.slow_s)
            )
        else:
            backend = make_backend(self.settings.engine_config())
        self.backends.append(backend)
        return backend

    @property
    def slow_s(self) -> float:
        return SLOW_S[self.name]

    def task(self, task_id: str, *, slow: bool = False, max_attempts: int = 2) -> Task:
        """An ``agent: command`` task; ``slow``: its first attempt works for :attr:`slow_s`."""
        prompt = f"sleep {self.slow_s:g} && echo {task_id}" if slow else f"echo {task_id}"
        self.behaviours[task_id] = ("slow", "succeed") if slow else ("succeed",)
        task = Task(id=task_id, prompt=prompt, agent=AgentKind.COMMAND, max_attempts=max_attempts)
        write_task(self.layout, task)
        return task

    def dispatch(self, max_workers: int, *, until_settled: bool = True) -> Run:
        """The real dispatcher of a new manager, in a thread."""
        context = prepare_spawning(self.settings, self.backend())
        dispatcher = Dispatcher(context, max_workers=max_workers, tick_s=1.0)
        halt = threading.Event()
        run = Run(dispatcher, threading.Thread(daemon=True, target=lambda: None), halt)

        def loop() -> None:
            run.ticks.append(dispatcher.run(until_settled=until_settled, stop=halt))

        run.thread = threading.Thread(target=loop, name=f"dispatcher-{self.name}", daemon=True)
        run.thread.start()
        return run

    def kill(self, task_id: str) -> None:
        """SIGKILL the worker of a task's current attempt, as ``docker kill`` does."""
        backend = self.backends[-1]
        name = backend.names.worker(task_id)
        if self.name == "stub":
            cast(StubWorkers, backend.workers).kill(name)
        elif self.name == "local":
            pid = int((self.layout.root / RECORDS_DIR / f"{name}.pid").read_text())
            os.kill(pid, signal.SIGKILL)
        else:  # a SLURM job's container runs on this host's Docker (one-node cluster)
            subprocess.run(["docker", "kill", name], check=True, capture_output=True)

    def close(self) -> None:
        """Remove every worker, gateway and model this root started."""
        backend = self.backend()
        for worker in backend.workers.all():
            with contextlib.suppress(Exception):
                backend.workers.stop(worker.name, timeout_s=2)
                backend.workers.remove(worker.name)
        with contextlib.suppress(Exception):
            backend.services.stop_gateway()
            backend.services.stop_scripted_model()
        for opened in self.backends:
            opened.close()


def _docker_ready() -> None:
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.images.get(WORKER_IMAGE)
        client.close()
    except Exception as error:  # no engine, or the image is not built
        require(False, f"no Docker engine with {WORKER_IMAGE} ({error}); build it with "
                "scripts/build-images.sh --offline")


SLURM = pytest.param("slurm", marks=[pytest.mark.slurm, pytest.mark.docker, pytest.mark.slow])
"""On the one-node SLURM cluster (``slurm_cluster``), deselected with ``-m 'not slurm'``."""


@pytest.fixture(params=["stub", "local", pytest.param("docker", marks=pytest.mark.docker), SLURM])
def each_engine(
    request: pytest.FixtureRequest, tmp_path: Path, layout: Layout, cli_process: None
) -> Iterator[EngineKit]:
    """The scenario's engine (stub, local, docker, slurm) for a fresh root with a remote
    repository."""
    kit = EngineKit(request.param, layout, make_remote(tmp_path))
    if request.param in ("docker", "slurm"):
        _docker_ready()
    if request.param == "slurm":
        request.getfixturevalue("slurm_cluster")
        kit.profiles = tmp_path / "profiles.yaml"
        kit.profiles.write_text(f"default:\n  image: {WORKER_IMAGE}\n  memory: 512m\n  cpus: 1\n")
    try:
        yield kit
    finally:
        kit.close()
