"""The dispatcher: keeps up to N workers running on the tasks that may start, recovers the
workers that die, and retries what ``max_attempts`` allows.

It holds no state of its own that matters: it starts from the volume and the backend's workers
(container labels), so a restarted dispatcher picks up exactly where the last one stopped: a task
whose worker still runs is not started again, one whose worker died while no dispatcher watched
is recovered. Ticks are driven by the protocol watcher (tasks, results, cancel requests; the
board is kept current through :class:`LiveBoard`), by the backend's exit events, and by a timer
for leases that run out. A timer tick after a pass that did nothing, with no file changed, the
same workers and no lease run out, is that pass again: it looks at the workers, not the tasks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from filelock import FileLock, Timeout

from orchestration_protocol import (
    Board,
    Task,
    TaskState,
    next_attempt,
    read_board,
    utc_now,
)
from orchestration_protocol.pool import task_profile
from orchestration_protocol.priorities import ordered_by, read_priorities
from orchestration_protocol.watcher import ALL_KINDS
from orchestration_views.progress import Progress, assess

from ..backends import WorkerRecord
from ..errors import (
    BranchMissing,
    DispatcherBusy,
    EngineBusy,
    ImageMissing,
    MirrorUnavailable,
    NoRepository,
    TaskNotSpawnable,
    UnknownProfile,
)
from ..polling import poll_until
from ..views.monitor import LiveBoard
from .pool import GRACE_S as POOL_GRACE_S
from .pool_workers import idle_pool_workers, with_pool_tasks
from .reaper import EndedAt, remove_ended_workers
from .recovery import Recovery, fail_unstartable, recover_ended_worker, recover_lost_task
from .rounds import RoundAsked, request_repairs
from .spawn import SpawnContext, spawn_attempt

logger = logging.getLogger(__name__)

LOCK_NAME = ".dispatcher.lock"
DEFAULT_TICK_S = 5.0
DEBOUNCE_S = 0.1
SPAWN_THREADS = 4
TASK_ERRORS = (UnknownProfile, ImageMissing, MirrorUnavailable, BranchMissing, NoRepository)
"""Errors that concern one task's profile or repository, not the machine: they fail that task
only."""
POOL_RECHECK_S = 0.25
"""While tasks are left to a pool: how often to look whether they were claimed."""


@dataclass
class Tick:
    """What one pass saw and did."""

    board: Board
    states: dict[str, TaskState]
    progress: Progress
    spawned: list[WorkerRecord] = field(default_factory=list)
    recovered: list[Recovery] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    repairs: list[RoundAsked] = field(default_factory=list)
    """Repair rounds asked for in this pass (a failing check, rounds left)."""
    running: int = 0
    quiet: bool = False
    """Nothing was done and nothing is left to do: unless a file, a worker or a lease changes,
    the next pass would do the same."""


class Dispatcher:
    """Starts workers for ready tasks, at most ``max_workers`` at a time."""

    def __init__(
        self,
        context: SpawnContext,
        *,
        max_workers: int,
        scope: Iterable[str] | None = None,
        profile: str | None = None,
        tick_s: float | None = None,
    ) -> None:
        self.context = context
        self.settings = context.settings
        self.backend = context.backend
        self.layout = context.settings.layout
        self.max_workers = max_workers
        self.scope = frozenset(scope) if scope is not None else None
        self.profile = profile
        lease = self.settings.lease_s
        self.tick_s = tick_s or (min(DEFAULT_TICK_S, lease / 3) if lease else DEFAULT_TICK_S)
        self._handled: set[tuple[str, int | None]] = set()
        self._live: LiveBoard | None = None
        self._ended_at: EndedAt = {}
        """When ended attempts ended, read once from their results (for the reaper)."""
        self._offered: dict[tuple[str, int], float] = {}
        """Ready tasks left to idle pool workers, and since when (monotonic)."""
        self._last: tuple[Tick, list[WorkerRecord]] | None = None
        """The last pass and the workers it saw."""
        self._lost_left = False
        """The last pass saw a lost task it did not recover."""

    # --- one pass ------------------------------------------------------------------------------

    def _read(self, changed: list[Recovery]) -> Board:
        return self._reread(recovery.task_id for recovery in changed)

    def _reread(self, task_ids: Iterable[str]) -> Board:
        if self._live is None:
            return read_board(self.layout)
        self._live.invalidate(task_ids)
        return self._live.refresh()

    def tick(self, now: datetime | None = None) -> Tick:
        """Recover, then spawn; return what was seen and done."""
        workers = with_pool_tasks(self.layout, self.backend.workers.all())
        recovered = self._recover_ended(workers)
        now = now or utc_now()
        board = self._read(recovered)
        states, changed = self._states(board, workers, now)
        if not changed and not recovered and self._last is not None:
            last, seen = self._last
            if last.quiet and workers == seen:
                return self._quiet_tick(last, workers, now)
        lost = self._recover_lost(board, states)
        stopped = self._stop_hung(board, states, workers, now)
        recovered += lost
        if lost:
            board = self._read(lost)
            states, _ = self._states(board, workers, now)
        repairs = request_repairs(
            self.layout, board, states, default_max=self.settings.max_repairs, scope=self.scope
        )
        if repairs:
            board = self._reread(asked.task_id for asked in repairs)
            states, _ = self._states(board, workers, now)
        tick = Tick(board, states, assess(board, states, self.scope), recovered=recovered)
        tick.stopped, tick.repairs = stopped, repairs
        started = self._spawn_ready(tick, workers)
        tick.quiet = not (
            recovered or stopped or repairs or started or self._offered or self._lost_left
        )
        self._remove_ended(workers, now)
        self._last = (tick, workers)
        return tick

    def _quiet_tick(self, last: Tick, workers: list[WorkerRecord], now: datetime) -> Tick:
        """The last pass again (nothing changed since it did nothing): only the workers are
        looked at, for one that hangs and for ended ones to remove."""
        tick = Tick(last.board, last.states, last.progress, running=last.running, quiet=True)
        tick.stopped = self._stop_hung(last.board, last.states, workers, now)
        tick.quiet = not tick.stopped
        self._remove_ended(workers, now)
        self._last = (tick, workers)
        return tick

    def _remove_ended(self, workers: list[WorkerRecord], now: datetime) -> None:
        remove_ended_workers(
            self.layout, self.backend, workers, now, self.settings.remove_ended_after_s,
            self._ended_at,
        )

    def _states(
        self, board: Board, workers: list[WorkerRecord], now: datetime
    ) -> tuple[dict[str, TaskState], bool]:
        """Every task's state, and whether it may differ from the last pass's."""
        alive: dict[str, bool] = {}
        for worker in workers:
            alive[worker.task_id] = alive.get(worker.task_id, False) or worker.running
        if self._live is None:
            return board.states(now=now, container_alive=alive), True
        return self._live.states(now=now, container_alive=alive)

    def _recover_ended(self, workers: list[WorkerRecord]) -> list[Recovery]:
        recovered = []
        for worker in workers:
            key = (worker.name, worker.attempt)
            if worker.running or key in self._handled or not worker.task_id:
                continue
            recovery = recover_ended_worker(self.layout, self.backend, worker, self.context.secrets)
            self._handled.add(key)
            if recovery is not None:
                logger.warning("%s", recovery.error)
                recovered.append(recovery)
        return recovered

    def _recover_lost(self, board: Board, states: dict[str, TaskState]) -> list[Recovery]:
        recovered = []
        self._lost_left = False
        for task_id, state in states.items():
            if state == TaskState.LOST:
                recovery = recover_lost_task(
                    self.layout, self.backend, board.snapshots[task_id], self.context.secrets
                )
                if recovery is not None:
                    recovered.append(recovery)
                else:
                    self._lost_left = True
        return recovered

    def _stop_hung(
        self, board: Board, states: dict[str, TaskState], workers: list[WorkerRecord], now: datetime
    ) -> list[str]:
        """Stop a live worker whose heartbeat is more than a lease overdue (its die event then
        brings it to recovery)."""
        stopped = []
        for worker in workers:
            snapshot = board.snapshots.get(worker.task_id)
            if not worker.running or snapshot is None or snapshot.claim is None:
                continue
            state = states.get(worker.task_id)
            if state is None or not state.has_live_worker or snapshot.current_status is None:
                continue
            overdue = now - snapshot.current_status.lease_expires_at
            if overdue > timedelta(seconds=snapshot.claim.lease_s):
                logger.warning("stopping %s: no heartbeat for %s", worker.name, overdue)
                self.backend.workers.stop(worker.name, timeout_s=5)
                stopped.append(worker.name)
        return stopped

    def _candidates(self, tick: Tick, busy: set[str]) -> list[tuple[str, int]]:
        ready: list[tuple[Task, int]] = []
        for task_id, state in tick.states.items():
            if not state.may_start_attempt or task_id in busy:
                continue
            if state == TaskState.LOST:  # recovery writes the lost attempt's result first
                continue
            if self.scope is not None and task_id not in self.scope:
                continue
            snapshot = tick.board.snapshots[task_id]
            attempt = next_attempt(snapshot, state)
            if attempt is not None and snapshot.task is not None:
                ready.append((snapshot.task, attempt))
        queue = ordered_by(ready, read_priorities(self.layout.root), lambda pair: pair[0])
        return [(task.id, attempt) for task, attempt in queue]  # the highest, then the oldest

    def _spawn_ready(self, tick: Tick, workers: list[WorkerRecord]) -> bool:
        """Start the ready tasks that fit under ``max_workers``, a few at a time in parallel
        (most of a spawn is waiting for the engine); leave to idle pool workers what they will
        claim (for :data:`POOL_GRACE_S`, then start a worker of its own). True when there was
        one to start (started or not)."""
        busy = {worker.task_id for worker in workers if worker.running and worker.task_id}
        free = max(0, self.max_workers - len(busy))
        candidates = self._leave_to_pool(tick, self._candidates(tick, busy), workers)
        tasks: list[tuple[Task, int]] = []
        for task_id, attempt in candidates[:free]:
            task = tick.board.snapshots[task_id].task
            if task is not None and self._startable(tick, task, attempt):
                tasks.append((task, attempt))
        with ThreadPoolExecutor(max_workers=SPAWN_THREADS) as pool:
            futures = [
                pool.submit(spawn_attempt, self.context, task, attempt, self.profile)
                for task, attempt in tasks
            ]
        for future in futures:
            try:
                tick.spawned.append(future.result())
            except TaskNotSpawnable as error:  # raced with another spawner: it runs anyway
                logger.info("%s", error)
            except EngineBusy as error:  # still pending: the next tick tries again
                logger.warning("%s", error)
        tick.running = len(busy) + len(tick.spawned)
        return bool(tasks)

    def _leave_to_pool(
        self, tick: Tick, candidates: list[tuple[str, int]], workers: list[WorkerRecord]
    ) -> list[tuple[str, int]]:
        """The candidates no idle pool worker is about to take. A task left to the pool gets
        its repository mirrored (pool workers clone only from a mirror) and is started cold
        after :data:`POOL_GRACE_S` if no pool worker claimed it by then."""
        idle = idle_pool_workers(self.layout, workers) if any(w.pool for w in workers) else {}
        now = time.monotonic()
        offered = {}
        cold = []
        for task_id, attempt in candidates:
            task = tick.board.snapshots[task_id].task
            profile = task_profile(task) if task is not None else None
            if task is None or profile is None or (self.profile or profile) != profile:
                cold.append((task_id, attempt))
                continue
            since = self._offered.get((task_id, attempt), now)
            if idle.get(profile, 0) > 0 and now - since < POOL_GRACE_S:
                if self._startable(tick, task, attempt):
                    idle[profile] -= 1
                    offered[(task_id, attempt)] = since
                continue
            cold.append((task_id, attempt))
        self._offered = offered
        return cold

    def _startable(self, tick: Tick, task: Task, attempt: int) -> bool:
        """Check the task's profile (once per profile) and mirror its repository (once per
        repository); a task whose profile is unknown, whose image is missing or whose repository
        cannot be mirrored fails this attempt with the reason instead of stopping the queue."""
        try:
            self.context.preflight(self.profile or task.profile)
            self.context.mirror(task)
        except TASK_ERRORS as error:
            recovery = fail_unstartable(self.layout, task.id, attempt, str(error))
            if recovery is not None:
                tick.recovered.append(recovery)
            return False
        return True

    # --- the loop ------------------------------------------------------------------------------

    def run(
        self,
        *,
        until_settled: bool,
        stop: threading.Event | None = None,
        on_tick: Callable[[Tick], None] | None = None,
        deadline: float | None = None,
    ) -> Tick:
        """Tick on every event until stopped, or until the scope is settled; the last tick."""

        stop = stop or threading.Event()
        kinds = (*ALL_KINDS, "priorities")  # an edited priorities.csv applies at once
        live = LiveBoard(
            self.layout, kinds=kinds, wake_on=("task", "result", "cancel", "priorities")
        )
        wake = live.wake
        halt_exits = threading.Event()
        with self.lock(), live:
            self._live = live
            self.backend.workers.watch_exits(lambda _worker: wake.set(), halt_exits)
            try:
                while True:
                    wake.clear()
                    tick = self.tick()
                    if on_tick is not None:
                        on_tick(tick)
                    if until_settled and tick.progress.done:
                        return tick
                    if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                        return tick
                    timeout = self.tick_s if not self._offered else POOL_RECHECK_S
                    if deadline is not None:
                        timeout = max(0.0, min(timeout, deadline - time.monotonic()))
                    if wake.wait(timeout):
                        stop.wait(DEBOUNCE_S)
            finally:
                halt_exits.set()
                self._live = None

    def wait_for_workers(self, timeout_s: float = 15.0) -> list[str]:
        """After the scope is settled: let its workers exit (they publish, then end); the names
        of those still running at the deadline."""

        def running() -> list[str]:
            return [
                worker.name
                for worker in self.backend.workers.all()
                if worker.running and (self.scope is None or worker.task_id in self.scope)
            ]

        poll_until(lambda: not running(), timeout_s=timeout_s, interval_s=0.1)
        return running()

    @contextlib.contextmanager
    def lock(self):  # type: ignore[no-untyped-def]
        """Hold the root's dispatcher lock (one dispatcher per root)."""
        lock = FileLock(str(self.layout.root / LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise DispatcherBusy(
                f"Another dispatcher is already running on {self.layout.root}; let it finish or "
                "stop it first (only one may start workers for a root)."
            ) from None
        try:
            yield
        finally:
            lock.release()  # the file stays: unlinking lock files races with other lockers
