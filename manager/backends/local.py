"""The local backend: workers as processes on this host, for fast tests and for hosts without
Docker. Each worker runs under a small supervisor (``python -m manager.backends.local``) that
forwards SIGTERM, records the worker's exit code and removes its private secrets directory.

Records live in ``<root>/.workers/`` (hidden names are never protocol files), so a restarted
manager finds its workers again, as the Docker backend does through labels::

    <name>.json    who: task, attempt, supervisor pid and its start time
    <name>.out     the worker's stdout and stderr
    <name>.exit    the worker's exit code, once it ended
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from orchestration_protocol import atomic_write_bytes, is_valid_task_id
from worker.settings import SECRET_NAMES

from ..config import ManagerSettings
from ..errors import SpawnFailed, TaskNotSpawnable, WorkerCommandMissing
from ..profiles import Profile
from .base import (
    Backend,
    ExitInfo,
    IdleSpawnRequest,
    SpawnRequest,
    WorkerRecord,
    archived_worker_name,
)

WORKER_COMMAND_ENV = "ORCHESTRATOR_WORKER_COMMAND"
RECORDS_DIR = ".workers"
POLL_S = 0.25
FINISHING_S = 5.0
"""How long a spawn waits for the previous worker of the task to exit."""


def worker_command() -> list[str]:
    """``$ORCHESTRATOR_WORKER_COMMAND``, else ``orchestrator-worker`` beside this Python."""
    configured = os.environ.get(WORKER_COMMAND_ENV)
    if configured:
        return shlex.split(configured)
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


def start_detached(
    command: Sequence[str],
    *,
    output: Path,
    env: dict[str, str] | None = None,
    exit_file: Path | None = None,
    secrets_dir: Path | None = None,
) -> int:
    """Start ``command`` under a supervisor in its own session that outlives this process (and
    is not this process's child, so nothing is left to reap); return the supervisor's pid."""
    launcher = [sys.executable, "-m", "manager.backends.local", "--output", str(output)]
    if exit_file is not None:
        launcher += ["--exit-file", str(exit_file)]
    if secrets_dir is not None:
        launcher += ["--secrets-dir", str(secrets_dir)]
    started = subprocess.run(
        [*launcher, "--", *command],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if started.returncode != 0 or not started.stdout.strip().isdigit():
        reason = (started.stderr.strip().splitlines() or ["no output"])[-1]
        raise SpawnFailed(f"Could not start {command[0]} ({reason}); check the installation.")
    return int(started.stdout.strip())


def process_start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` (to tell it from a later process with the same pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


class LocalBackend(Backend):
    """Workers as supervised processes on this host."""

    name = "local"

    def __init__(self, settings: ManagerSettings) -> None:
        self.settings = settings
        self.records_dir = settings.root / RECORDS_DIR

    def _path(self, name: str, suffix: str) -> Path:
        return self.records_dir / f"{name}{suffix}"

    def preflight(self, profile: Profile) -> None:
        worker_command()

    def _archive_previous(self, name: str, task_id: str) -> None:
        record = self._read(name)
        deadline = time.monotonic() + FINISHING_S
        while record is not None and record.running and time.monotonic() < deadline:
            time.sleep(0.05)  # a worker that just published its result is still exiting
            record = self._read(name)
        if record is None:
            return
        if record.running:
            raise TaskNotSpawnable(
                f"Task {task_id} already has a running worker {name}; wait for it, or stop it "
                f"with 'orchestrator task cancel {task_id}'."
            )
        target = archived_worker_name(task_id, record.attempt)
        for suffix in (".json", ".out", ".exit", ".pid"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(self._path(name, suffix), self._path(target, suffix))

    def spawn(self, request: SpawnRequest) -> WorkerRecord:
        command = worker_command()
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self._archive_previous(request.name, request.task_id)
        env = {key: value for key, value in os.environ.items() if key not in SECRET_NAMES}
        env.update(request.env)
        pid = start_detached(
            [*command, *request.worker_args, "--root", str(self.settings.root)],
            output=self._path(request.name, ".out"),
            env=env,
            exit_file=self._path(request.name, ".exit"),
        )
        record = {
            "name": request.name,
            "task_id": request.task_id,
            "attempt": request.attempt,
            "profile": request.profile.name,
            "pid": pid,
            "start_ticks": process_start_ticks(pid),
            "created_at": datetime.now(UTC).isoformat(),
        }
        atomic_write_bytes(self._path(request.name, ".json"), json.dumps(record).encode())
        return WorkerRecord.just_started(request)

    def spawn_idle(self, request: IdleSpawnRequest) -> WorkerRecord:
        command = worker_command()
        self.records_dir.mkdir(parents=True, exist_ok=True)
        env = {key: value for key, value in os.environ.items() if key not in SECRET_NAMES}
        env.update(request.env)
        pid = start_detached(
            [*command, *request.worker_args, "--root", str(self.settings.root)],
            output=self._path(request.name, ".out"),
            env=env,
            exit_file=self._path(request.name, ".exit"),
        )
        record = {
            "name": request.name,
            "task_id": "",
            "pool": request.pool,
            "profile": request.profile.name,
            "pid": pid,
            "start_ticks": process_start_ticks(pid),
            "created_at": datetime.now(UTC).isoformat(),
        }
        atomic_write_bytes(self._path(request.name, ".json"), json.dumps(record).encode())
        return WorkerRecord(
            name=request.name,
            task_id="",
            attempt=None,
            running=True,
            created_at=datetime.now(UTC),
            profile=request.profile.name,
            pool=request.pool,
        )

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

    def workers(self) -> list[WorkerRecord]:
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

    def follow_logs(self, name: str) -> Iterator[str]:
        path = self._path(name, ".out")
        offset = 0
        while True:
            record = self._read(name)
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
                offset += len(chunk)
                if chunk:
                    yield chunk.decode(errors="replace")
            if record is None or not record.running:
                return
            time.sleep(POLL_S)

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
        deadline = time.monotonic() + timeout_s
        while self._alive(pid, None):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

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
            running = {record.name for record in self.workers() if record.running}
            while not stop.wait(POLL_S):
                records = {record.name: record for record in self.workers()}
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


# --- the supervisor ------------------------------------------------------------------------------


def supervise(argv: Sequence[str] | None = None) -> int:
    """Detach (print the supervisor's pid and let the launcher return), then run the command
    with its output in ``--output``, forward SIGTERM/SIGINT to it, record its exit code and
    remove its secrets directory."""
    parser = argparse.ArgumentParser(prog="python -m manager.backends.local")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--exit-file", type=Path)
    parser.add_argument("--secrets-dir", type=Path)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        os._exit(0)
    os.setsid()
    out = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    worker = subprocess.Popen(args.command)
    if args.exit_file is not None:
        atomic_write_bytes(args.exit_file.with_suffix(".pid"), str(worker.pid).encode())

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = worker.wait()
    code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says
    if args.secrets_dir is not None:
        shutil.rmtree(args.secrets_dir, ignore_errors=True)
    if args.exit_file is not None:
        atomic_write_bytes(args.exit_file, f"{code}\n".encode())
    return code


if __name__ == "__main__":
    sys.exit(supervise())
