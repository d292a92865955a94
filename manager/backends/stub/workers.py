"""The stub engine's workers: threads of this process that keep the real worker protocol against
the real files (claim, heartbeat, result; a warm pool worker's idle and busy records too) in
milliseconds, and end as ``behaviours`` says: a
success, a failed result, a crash (no result, exit 1), an OOM kill (no result, exit 137 with
``oom_killed``), or a slow success. :meth:`StubWorkers.kill` ends one as ``docker kill`` does.

The workers of one root are kept in a table per root, so every backend made for the root in this
process (one per command) sees the same workers, as labels let Docker's do.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestration_protocol import Layout, Result, ResultStatus, WorkerPhase, utc_now
from orchestration_protocol.claims import ClaimHandle, claim_task
from orchestration_protocol.contract import WorkerExit
from orchestration_protocol.errors import ProtocolError
from orchestration_protocol.outcomes import CheckCounts, CheckOutcome, RoundKind, RoundReport
from orchestration_protocol.pool import (
    PoolWorker,
    PoolWorkerState,
    read_pool_heartbeat,
    remove_pool_worker,
    task_profile,
    write_pool_worker,
)
from orchestration_protocol.rounds import read_round_for_attempt
from orchestration_protocol.state import TaskState, next_attempt, read_task_state

from ...errors import TaskNotSpawnable
from ..base import (
    ExitInfo,
    IdleSpawnRequest,
    SpawnRequest,
    WorkerRecord,
    Workers,
    archived_worker_name,
)
from ..config import StubBehaviour, StubConfig

KILLED = 137
"""Exit code of a killed worker (128 + SIGKILL), as Docker reports it."""
TERMINATED = 143
"""Exit code of a worker stopped by SIGTERM before it published."""


@dataclass
class StubWorker:
    """One stub worker (a task's, or a warm pool's): its thread, how it ended, what it printed."""

    request: SpawnRequest | IdleSpawnRequest
    name: str
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    exit_code: int | None = None
    oom_killed: bool = False
    output: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    killed: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def record(self) -> WorkerRecord:
        request = self.request
        return WorkerRecord(
            name=self.name,
            task_id=request.task_id if isinstance(request, SpawnRequest) else "",
            attempt=request.attempt if isinstance(request, SpawnRequest) else None,
            running=self.running,
            exit_code=self.exit_code,
            created_at=self.created_at,
            profile=request.profile.name,
            pool=request.pool if isinstance(request, IdleSpawnRequest) else None,
        )


@dataclass
class Fleet:
    """The stub workers of one root, and who listens for their exits."""

    workers: dict[str, StubWorker] = field(default_factory=dict)
    listeners: list[queue.Queue[WorkerRecord]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


FLEETS: dict[Path, Fleet] = {}
FLEETS_LOCK = threading.Lock()


def fleet_of(root: Path) -> Fleet:
    """The one table of stub workers of ``root`` in this process."""
    with FLEETS_LOCK:
        return FLEETS.setdefault(root.resolve(), Fleet())


def stub_check(passed: bool) -> CheckOutcome:
    """The check a stub worker reports: one test passing, and one failing unless ``passed``."""
    return CheckOutcome(
        passed=passed,
        exit_code=0 if passed else 1,
        commands=["python3 -m unittest"],
        failed_command=None if passed else "python3 -m unittest",
        source="stub",
        runner="unittest",
        counts=CheckCounts(passed=2 if passed else 1, failed=0 if passed else 1),
        counts_from="summary",
        failing_tests=[] if passed else ["test_stub.StubTest.test_broken"],
        output_excerpt="OK" if passed else "FAIL: test_broken (test_stub.StubTest)\nFAILED (failures=1)",
    )


def stub_round(layout: Layout, handle: ClaimHandle, check: CheckOutcome | None) -> RoundReport:
    """The round a stub attempt was: the round file naming its attempt, else a first run."""
    try:
        request = read_round_for_attempt(layout, handle.task_id, handle.attempt)
    except ProtocolError:
        request = None
    return RoundReport(
        kind=request.kind if request else RoundKind.RUN,
        number=request.number if request else 1,
        check_passes=None if check is None else check.passed,
    )


class StubWorkers(Workers):
    """Workers as threads that keep the protocol (see the module's docstring)."""

    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self.layout = Layout(config.root)
        self.fleet = fleet_of(config.root)

    def behaviour(self, task_id: str, attempt: int) -> StubBehaviour:
        """What the worker of ``attempt`` of ``task_id`` does."""
        planned = self.config.behaviours.get(task_id) or (self.config.default,)
        return planned[min(attempt, len(planned)) - 1]

    def spawn(self, request: SpawnRequest) -> WorkerRecord:
        with self.fleet.lock:
            previous = self.fleet.workers.get(request.name)
            if previous is not None and previous.running:
                raise TaskNotSpawnable(
                    f"Task {request.task_id} already has a running worker {request.name}; wait "
                    f"for it, or stop it with 'orchestrator task cancel {request.task_id}'."
                )
            if previous is not None:
                attempt = getattr(previous.request, "attempt", None)
                archived = archived_worker_name(request.name, attempt)
                previous.name = archived
                self.fleet.workers[archived] = self.fleet.workers.pop(request.name)
            worker = StubWorker(request, request.name)
            self.fleet.workers[request.name] = worker
        self._start(worker)
        return WorkerRecord.just_started(request)

    def spawn_idle(self, request: IdleSpawnRequest) -> WorkerRecord:
        """A warm pool worker: it files its idle record, claims the oldest ready task of its
        profile, files itself busy and works it as a task's worker would."""
        worker = StubWorker(request, request.name)
        with self.fleet.lock:
            self.fleet.workers[request.name] = worker
        self._start(worker)
        return WorkerRecord.idle_started(request)

    def _start(self, worker: StubWorker) -> None:
        worker.thread = threading.Thread(
            target=self._run, args=(worker,), name=f"stub-{worker.name}", daemon=True
        )
        worker.thread.start()

    # --- the worker's own life ----------------------------------------------------------------

    def _run(self, worker: StubWorker) -> None:
        try:
            code, oom = self._work(worker)
        except ProtocolError as error:  # its claim was lost, or the files are unreadable
            worker.output.append(f"stub worker: {error}")
            code, oom = int(WorkerExit.CLAIM_LOST), False
        if worker.killed.is_set():
            code, oom = KILLED, False
        self._ended(worker, code, oom)

    def _work(self, worker: StubWorker) -> tuple[int, bool]:
        request = worker.request
        if isinstance(request, IdleSpawnRequest):
            handle = self._wait_for_task(worker, request)
            if handle is None:
                return int(WorkerExit.OK), False
        else:
            handle = claim_task(
                self.layout,
                request.task_id,
                worker_id=worker.name,
                lease_s=self.config.lease_s,
                force=request.force,
            )
            if handle is None or handle.attempt != request.attempt:
                worker.output.append(f"stub worker: task {request.task_id} has nothing to claim")
                return int(WorkerExit.NOTHING_TO_CLAIM), False
        return self._attempt(worker, handle)

    def _pool_record(
        self, worker: StubWorker, request: IdleSpawnRequest, handle: ClaimHandle | None
    ) -> None:
        write_pool_worker(
            self.layout,
            PoolWorker(
                name=worker.name,
                pool=request.pool,
                profile=request.profile.name,
                state=PoolWorkerState.BUSY if handle else PoolWorkerState.IDLE,
                since=utc_now(),
                task_id=handle.task_id if handle else None,
                attempt=handle.attempt if handle else None,
            ),
        )

    def _wait_for_task(self, worker: StubWorker, request: IdleSpawnRequest) -> ClaimHandle | None:
        """Idle until a task of the pool's profile is claimed (filed busy), or the worker is
        stopped or its pool stops beating (its record removed: None)."""
        self._pool_record(worker, request, None)
        while not worker.stop.is_set():
            beat = read_pool_heartbeat(self.layout, request.pool)
            if beat is None or beat.is_stale():
                break
            handle = self._claim_ready(worker, request.profile.name)
            if handle is not None:
                self._pool_record(worker, request, handle)
                worker.output.append(f"stub worker: claimed {handle.task_id}")
                return handle
            worker.stop.wait(self.config.heartbeat_s)
        remove_pool_worker(self.layout, request.pool, worker.name)
        return None

    def _claim_ready(self, worker: StubWorker, profile: str) -> ClaimHandle | None:
        """A claim on the oldest ready task of ``profile`` (not a lost one: the manager writes
        its result first), as a pool worker takes it."""
        now = utc_now()
        for path in sorted(self.layout.tasks_dir.glob("*.json")):
            try:
                snapshot, state = read_task_state(self.layout, path.stem, now=now)
            except (ProtocolError, ValueError):
                continue
            task = snapshot.task
            if task is None or task_profile(task) != profile or state == TaskState.LOST:
                continue
            if not state.may_start_attempt or next_attempt(snapshot, state) is None:
                continue
            handle = claim_task(
                self.layout, task.id, worker_id=worker.name, lease_s=self.config.lease_s
            )
            if handle is not None:
                return handle
        return None

    def _attempt(self, worker: StubWorker, handle: ClaimHandle) -> tuple[int, bool]:
        behaviour = self.behaviour(handle.task_id, handle.attempt)
        started = utc_now()
        handle.heartbeat(WorkerPhase.RUNNING, container=worker.name, message="stub")
        worker.output.append(f"stub worker: attempt {handle.attempt}, {behaviour}")
        if behaviour == "crash":
            return int(WorkerExit.CRASHED), False
        if behaviour == "oom":
            return KILLED, True
        working_s = self.config.slow_s if behaviour == "slow" else 0.0
        ended = self._heartbeat_for(worker, handle, working_s)
        if ended is not None:
            return ended, False
        status = ResultStatus.FAILED if behaviour in ("fail", "check_fail") else ResultStatus.SUCCESS
        check = stub_check(behaviour == "check_pass") if behaviour.startswith("check_") else None
        self._publish(handle, worker, status, started, check)
        return int(WorkerExit.OK), False

    def _heartbeat_for(self, worker: StubWorker, handle: ClaimHandle, working_s: float) -> int | None:
        """Heartbeat for ``working_s``; an exit code when the worker must end early (killed,
        stopped, or cancelled: the last with its result published)."""
        deadline = threading.Event()
        timer = threading.Timer(working_s, deadline.set)
        timer.daemon = True
        timer.start()
        try:
            while not deadline.is_set():
                if worker.killed.is_set():
                    return KILLED
                if handle.cancel_request() is not None:
                    self._publish(handle, worker, ResultStatus.CANCELLED, utc_now())
                    return int(WorkerExit.OK)
                if worker.stop.is_set():
                    return TERMINATED
                handle.heartbeat(WorkerPhase.RUNNING, container=worker.name, message="stub")
                worker.stop.wait(self.config.heartbeat_s)
        finally:
            timer.cancel()
        return None

    def _publish(
        self,
        handle: ClaimHandle,
        worker: StubWorker,
        status: ResultStatus,
        started: datetime,
        check: CheckOutcome | None = None,
    ) -> None:
        failed = status != ResultStatus.SUCCESS
        error = f"the stub worker was told to end {status.value}" if failed else None
        if check is not None and not check.passed:
            error = f"check failed: {check.failed_command} exited 1 (1 failed, 0 errors, 1 passed)"
        handle.publish_result(
            Result(
                task_id=handle.task_id,
                status=status,
                output=f"stub {status.value}",
                completed_at=utc_now(),
                error=error,
                check=check,
                round=stub_round(self.layout, handle, check),
                exit_code=1 if status == ResultStatus.FAILED else 0,
                attempt=handle.attempt,
                worker_id=worker.name,
                started_at=started,
            )
        )
        worker.output.append(f"stub worker: published {status.value}")

    def _ended(self, worker: StubWorker, code: int, oom: bool) -> None:
        with self.fleet.lock:
            worker.exit_code, worker.oom_killed = code, oom
            listeners = list(self.fleet.listeners)
        record = worker.record()
        for listener in listeners:
            listener.put(record)

    # --- what the manager asks --------------------------------------------------------------

    def _find(self, name: str) -> StubWorker | None:
        with self.fleet.lock:
            return self.fleet.workers.get(name)

    def all(self) -> list[WorkerRecord]:
        with self.fleet.lock:
            return [worker.record() for worker in self.fleet.workers.values()]

    def exit_info(self, name: str) -> ExitInfo:
        worker = self._find(name)
        if worker is None:
            return ExitInfo(exit_code=None, error="worker is gone")
        return ExitInfo(exit_code=worker.exit_code, oom_killed=worker.oom_killed)

    def logs(self, name: str, *, tail: int | None = None) -> str:
        worker = self._find(name)
        lines = list(worker.output) if worker is not None else []
        return "".join(f"{line}\n" for line in (lines[-tail:] if tail else lines))

    def stop(self, name: str, timeout_s: float = 10) -> None:
        worker = self._find(name)
        if worker is not None and worker.thread is not None:
            worker.stop.set()
            worker.thread.join(timeout_s)
            if worker.thread.is_alive():
                self.kill(name)

    def kill(self, name: str) -> None:
        """End the worker ``name`` at once without a result, as ``docker kill`` does (137)."""
        worker = self._find(name)
        if worker is not None and worker.thread is not None:
            worker.killed.set()
            worker.stop.set()
            worker.thread.join()

    def remove(self, name: str) -> None:
        with self.fleet.lock:
            worker = self.fleet.workers.get(name)
            if worker is not None and not worker.running:
                del self.fleet.workers[name]

    def watch_exits(
        self, callback: Callable[[WorkerRecord], None], stop: threading.Event
    ) -> threading.Thread:
        heard: queue.Queue[WorkerRecord] = queue.Queue()
        with self.fleet.lock:
            self.fleet.listeners.append(heard)

        def follow() -> None:
            while not stop.is_set():
                try:
                    callback(heard.get(timeout=0.05))
                except queue.Empty:
                    continue
            with self.fleet.lock:
                self.fleet.listeners.remove(heard)

        thread = threading.Thread(target=follow, name="stub-exits", daemon=True)
        thread.start()
        return thread
