"""The local engine: workers as processes on this host, for fast tests and for hosts without
Docker. Each worker runs under a small supervisor (:mod:`manager.backends.local.processes`) that
forwards SIGTERM, records the worker's exit code and removes its private secrets directory.

Records live in ``<root>/.workers/`` (hidden names are never protocol files), so a restarted
manager finds its workers again, as the Docker backend does through labels::

    <name>.json    who: task, attempt, supervisor pid and its start time
    <name>.out     the worker's stdout and stderr
    <name>.exit    the worker's exit code, once it ended
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from orchestration_protocol import atomic_write_bytes, is_valid_task_id
from orchestration_protocol.contract import SECRET_NAMES

from ...errors import TaskNotSpawnable, WorkerCommandMissing
from ...polling import poll_until
from ..base import (
    ExitInfo,
    IdleSpawnRequest,
    SpawnRequest,
    WorkerRecord,
    Workers,
    archived_worker_name,
)
from ..config import LocalConfig
from .processes import RECORDS_DIR, process_start_ticks, start_detached

POLL_S = 0.25
FINISHING_S = 5.0
"""How long a spawn waits for the previous worker of the task to exit."""


def worker_command(configured: tuple[str, ...] | None = None) -> list[str]:
    """``configured`` (``$ORCHESTRATOR_WORKER_COMMAND``), else ``orchestrator-worker`` beside
    this Python, else on the PATH."""
    if configured:
        return list(configured)
    beside = Path(sys.executable).parent / "orchestrator-worker"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("orchestrator-worker")
    if found:
        return [found]
    raise WorkerCommandMissing(
        "orchestrator-worker is not installed here; install the project "
        "(pip install -e .) or set ORCHESTRATOR_WORKER_COMMAND."
    )


class LocalWorkers(Workers):
    """Workers as supervised processes on this host."""

    def __init__(self, config: LocalConfig) -> None:
        self.config = config
        self.records_dir = config.root / RECORDS_DIR

    def _path(self, name: str, suffix: str) -> Path:
        return self.records_dir / f"{name}{suffix}"

    def _archive_previous(self, name: str, task_id: str) -> None:
        record = self._read(name)
        if record is not None and record.running:  # one that just published is still exiting

            def exited() -> bool:
                current = self._read(name)
                return current is None or not current.running

            poll_until(exited, timeout_s=FINISHING_S)
            record = self._read(name)
        if record is None:
            return
        if record.running:
            raise TaskNotSpawnable(
                f"Task {task_id} already has a running worker {name}; wait for it, or stop it "
                f"with 'orchestrator task cancel {task_id}'."
            )
        target = archived_worker_name(name, record.attempt)
        for suffix in (".json", ".out", ".exit", ".pid"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(self._path(name, suffix), self._path(target, suffix))

    def spawn(self, request: SpawnRequest) -> WorkerRecord:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self._archive_previous(request.name, request.task_id)
        self._start(
            request.name,
            request.worker_args,
            request.env,
            {"task_id": request.task_id, "attempt": request.attempt},
            request.profile.name,
        )
        return WorkerRecord.just_started(request)

    def spawn_idle(self, request: IdleSpawnRequest) -> WorkerRecord:
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self._start(
            request.name,
            list(request.worker_args),
            request.env,
            {"task_id": "", "pool": request.pool},
            request.profile.name,
        )
        return WorkerRecord.idle_started(request)

    def _start(
        self,
        name: str,
        args: list[str],
        extra_env: dict[str, str],
        fields: dict[str, object],
        profile: str,
    ) -> None:
        """Start the worker ``name`` under its supervisor and file its record."""
        command = worker_command(self.config.worker_command)
        # the environment handed to a child process: this one's, less every secret
        env = {key: value for key, value in os.environ.items() if key not in SECRET_NAMES}
        env.update(extra_env)
        pid = start_detached(
            [*command, *args, "--root", str(self.config.root)],
            output=self._path(name, ".out"),
            env=env,
            exit_file=self._path(name, ".exit"),
        )
        record = {
            "name": name,
            **fields,
            "profile": profile,
            "pid": pid,
            "start_ticks": process_start_ticks(pid),
            "created_at": datetime.now(UTC).isoformat(),
        }
        atomic_write_bytes(self._path(name, ".json"), json.dumps(record).encode())

    def _alive(self, pid: int, start_ticks: int | None) -> bool:
        ticks = process_start_ticks(pid)
        if ticks is None or (start_ticks is not None and ticks != start_ticks):
            return False
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            return state != "Z"
        return False

    def _exit_code(self, name: str) -> int | None:
        try:
            return int(self._path(name, ".exit").read_text().strip())
        except (OSError, ValueError):
            return None

    def _read(self, name: str) -> WorkerRecord | None:
        try:
            data = json.loads(self._path(name, ".json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        pool = data.get("pool")
        if not is_valid_task_id(str(data.get("task_id", ""))) and not isinstance(pool, str):
            return None
        running = self._alive(int(data["pid"]), data.get("start_ticks"))
        created = data.get("created_at")
        return WorkerRecord(
            name=name,
            task_id=data["task_id"],
            attempt=data.get("attempt"),
            running=running,
            exit_code=None if running else self._exit_code(name),
            created_at=datetime.fromisoformat(created) if created else None,
            profile=data.get("profile"),
            pool=pool if isinstance(pool, str) else None,
        )

    def all(self) -> list[WorkerRecord]:
        try:
            names = sorted(os.listdir(self.records_dir))
        except FileNotFoundError:
            return []
        records = (self._read(name[:-5]) for name in names if name.endswith(".json"))
        return [record for record in records if record is not None]

    def exit_info(self, name: str) -> ExitInfo:
        code = self._exit_code(name)
        return ExitInfo(exit_code=code, error=None if code is not None else "supervisor gone")

    def logs(self, name: str, *, tail: int | None = None) -> str:
        try:
            text = self._path(name, ".out").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        if tail:
            text = "".join(text.splitlines(keepends=True)[-tail:])
        return text

    def stop(self, name: str, timeout_s: float = 10) -> None:
        """SIGTERM the worker (through its supervisor); after ``timeout_s`` SIGKILL the worker,
        so the supervisor still records how it ended; last, the whole process group."""
        record = self._read(name)
        if record is None or not record.running:
            return
        pid = json.loads(self._path(name, ".json").read_text())["pid"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if self._wait_gone(pid, timeout_s):
            return
        worker = self.worker_pid(name)
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        if not self._wait_gone(pid, 5):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

    def _wait_gone(self, pid: int, timeout_s: float) -> bool:
        return bool(poll_until(lambda: not self._alive(pid, None), timeout_s=timeout_s))

    def worker_pid(self, name: str) -> int | None:
        """The pid of the worker process itself (not its supervisor), while it runs."""
        try:
            return int(self._path(name, ".pid").read_text())
        except (OSError, ValueError):
            return None

    def remove(self, name: str) -> None:
        for suffix in (".json", ".out", ".exit", ".pid"):
            with contextlib.suppress(FileNotFoundError):
                self._path(name, suffix).unlink()

    def watch_exits(
        self, callback: Callable[[WorkerRecord], None], stop: threading.Event
    ) -> threading.Thread:
        def follow() -> None:
            running = {record.name for record in self.all() if record.running}
            while not stop.wait(POLL_S):
                records = {record.name: record for record in self.all()}
                for name in list(running):
                    record = records.get(name)
                    if record is None or not record.running:
                        running.discard(name)
                        if record is not None:
                            callback(record)
                running.update(name for name, record in records.items() if record.running)

        thread = threading.Thread(target=follow, name="local-exits", daemon=True)
        thread.start()
        return thread
