"""Warm pools: ``orchestrator pool -n N`` keeps N idle hardened workers of one profile.

Each pool worker is the ordinary worker image with the ordinary container options, started with
``--warm`` instead of a task: it waits on the volume and claims a task of its profile the moment
the task's file appears (see ``worker/pool.py``); the claim makes that safe however many wait.
It runs that one task and exits; the pool writes the result of a worker that died without one,
and starts a fresh worker in its place (ended ones are kept, as a task's own workers are, until
the pool stops or ``orchestrator cleanup``). The pool beats in
``pool/<pool>/manager.json``; idle workers whose pool stops beating end by themselves, so a
pool whose manager was killed does not keep idle containers for ever.

Which task a pool worker runs is in its record (``pool/<pool>/workers/<name>.json``), checked
against the claim it names: :func:`with_pool_tasks` gives every view (status, logs, dispatch,
recovery) the same records as for a task's own worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from orchestration_protocol import (
    Claim,
    InvalidFile,
    Layout,
    TaskState,
    is_valid_task_id,
    read_model_if_exists,
    utc_now,
)
from orchestration_protocol.contract import ENV_POOL, ENV_POOL_PROFILE
from orchestration_protocol.pool import (
    PoolHeartbeat,
    PoolWorker,
    PoolWorkerState,
    read_pool_worker,
    remove_pool_heartbeat,
    remove_pool_worker,
    task_profile,
    worker_record_file,
    write_pool_heartbeat,
)

from ..backends import Backend, IdleSpawnRequest, WorkerRecord
from ..errors import (
    BadInput,
    BranchMissing,
    EngineBusy,
    ImageMissing,
    ManagerError,
    MirrorUnavailable,
    UnknownProfile,
)
from ..polling import poll_until
from ..profiles import Profile
from ..views.monitor import LiveBoard
from .recovery import Recovery, fail_unstartable, recover_ended_worker, recover_lost_task
from .spawn import SpawnContext, worker_env_named

logger = logging.getLogger(__name__)

BEAT_S = 2.0
"""How often the pool rewrites its heartbeat (and looks at its workers without an event)."""
STALE_AFTER_S = 15.0
"""Idle workers end when their pool has not beaten for this long (its manager is gone)."""
STOP_TIMEOUT_S = 10.0
"""How long a stopping pool lets a busy worker end its task before it is killed."""
START_THREADS = 4
TASK_ERRORS = (UnknownProfile, ImageMissing, MirrorUnavailable, BranchMissing)
"""Errors that concern one task's repository: they fail that task only."""
GRACE_S = 5.0
"""How long ``dispatch``/``run`` leave a ready task to an idle pool worker before a cold spawn."""


# --- which task a pool worker runs ---------------------------------------------------------------

T = TypeVar("T")
CACHED_FILES = 4096
"""Most files a :class:`ChangedFiles` remembers (it forgets them all past that)."""


class ChangedFiles(Generic[T]):
    """What was read from files, read again only when a file changed (its inode, size or
    mtime): the dispatcher and the pool look at every pool worker's record and claim on every
    tick, and those files change once or twice in a worker's life."""

    def __init__(self) -> None:
        self._known: dict[Path, tuple[tuple[int, int, int], T]] = {}
        self._lock = threading.Lock()

    def read(self, path: Path, read: Callable[[], T], missing: T) -> T:
        """``read()``'s value for ``path`` as it is now (``missing`` when there is no file)."""
        try:
            info = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            with self._lock:
                self._known.pop(path, None)
            return missing
        signature = (info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:
            known = self._known.get(path)
        if known is not None and known[0] == signature:
            return known[1]
        value = read()
        with self._lock:
            if len(self._known) >= CACHED_FILES:
                self._known.clear()
            self._known[path] = (signature, value)
        return value


_records: ChangedFiles[PoolWorker | None] = ChangedFiles()
_claims: ChangedFiles[str | None] = ChangedFiles()


def pool_record(layout: Layout, pool: str, name: str) -> PoolWorker | None:
    """A pool worker's record (``read_pool_worker``), parsed again only when its file changed."""
    path = worker_record_file(layout, pool, name)
    return _records.read(path, lambda: read_pool_worker(layout, pool, name), None)


def claim_holder(layout: Layout, task_id: str, attempt: int) -> str | None:
    """Who holds the claim of that attempt (None when there is none, or it is unreadable)."""

    def holder() -> str | None:
        try:
            claim = read_model_if_exists(layout.claim_file(task_id, attempt), Claim, task_id)
        except (InvalidFile, ValueError):
            return None
        return claim.worker_id if claim is not None else None

    return _claims.read(layout.claim_file(task_id, attempt), holder, None)


def with_pool_tasks(layout: Layout, workers: Iterable[WorkerRecord]) -> list[WorkerRecord]:
    """``workers`` with each busy pool worker's task and attempt filled in from its record, when
    the claim it names agrees; idle pool workers keep an empty ``task_id``."""
    resolved = []
    for worker in workers:
        if worker.pool is not None and not worker.task_id:
            record = pool_record(layout, worker.pool, worker.name)
            if (
                record is not None
                and record.state == PoolWorkerState.BUSY
                and record.task_id
                and record.attempt
                and claim_holder(layout, record.task_id, record.attempt) == worker.name
            ):
                worker = dataclasses.replace(
                    worker, task_id=record.task_id, attempt=record.attempt
                )
        resolved.append(worker)
    return resolved


def idle_pool_workers(layout: Layout, workers: Iterable[WorkerRecord]) -> dict[str, int]:
    """How many running pool workers wait idle, per profile (resolved ``workers``)."""
    idle: dict[str, int] = {}
    for worker in workers:
        if worker.pool is None or worker.task_id or not worker.running:
            continue
        record = pool_record(layout, worker.pool, worker.name)
        if record is not None and record.state == PoolWorkerState.IDLE:
            idle[record.profile] = idle.get(record.profile, 0) + 1
    return idle


def worker_of_task(layout: Layout, backend: Backend, task_id: str, default: str) -> str:
    """The name of the worker that runs (or ran) a task's current attempt: its own container,
    or the pool worker that claimed it; ``default`` when none is known."""
    from orchestration_protocol import read_snapshot

    snapshot = read_snapshot(layout, task_id)
    names = {worker.name for worker in backend.workers.all()}
    status = snapshot.current_status
    for name in (status.container if status else None, snapshot.claim.worker_id if snapshot.claim else None):
        if name and name in names:
            return name
    return default


def pool_summaries(layout: Layout) -> list[dict[str, object]]:
    """Every pool that beats on the volume, from its files alone (no engine asked): name,
    profile, size, and how many of its workers wait idle or run a task now."""
    from orchestration_protocol import read_snapshot
    from orchestration_protocol.pool import pools_dir, read_pool_heartbeat, read_pool_workers

    records = read_pool_workers(layout)
    summaries: list[dict[str, object]] = []
    for directory in sorted(pools_dir(layout).glob("*/manager.json")):
        try:
            heartbeat = read_pool_heartbeat(layout, directory.parent.name)
        except ValueError:
            continue
        if heartbeat is None or heartbeat.is_stale():
            continue
        mine = [record for record in records if record.pool == heartbeat.pool]
        busy = sum(
            1
            for record in mine
            if record.state == PoolWorkerState.BUSY
            and record.task_id
            and read_snapshot(layout, record.task_id).current_result is None
        )
        idle = sum(1 for record in mine if record.state == PoolWorkerState.IDLE)
        summaries.append(
            {
                "pool": heartbeat.pool,
                "profile": heartbeat.profile,
                "size": heartbeat.size,
                "idle": idle,
                "busy": busy,
            }
        )
    return summaries


# --- the pool ------------------------------------------------------------------------------------


@dataclass
class PoolTick:
    """What one pass of the pool saw and did."""

    idle: int = 0
    busy: int = 0
    started: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    recovered: list[Recovery] = field(default_factory=list)


class WarmPool:
    """Keeps ``size`` workers of one profile waiting for tasks."""

    def __init__(
        self, context: SpawnContext, *, size: int, profile: str | None, name: str | None = None
    ) -> None:
        if size < 1:
            raise BadInput(f"A pool needs at least one worker (got -n {size}); give -n 1 or more.")
        self.context = context
        self.backend = context.backend
        self.layout = context.settings.layout
        self.size = size
        self.profile: Profile = context.preflight(profile)
        self.name = name or f"{self.profile.name[:38]}-{secrets.token_hex(3)}"
        if not is_valid_task_id(self.name) or len(self.name) > 45:
            raise BadInput(
                f"Pool name {self.name!r} is not valid: use 1-45 letters, digits, '.', '_' or "
                "'-', starting with a letter or digit."
            )
        self._handled: set[str] = set()
        self._live: LiveBoard | None = None
        self._stopping = threading.Event()

    # --- one pass ------------------------------------------------------------------------------

    def beat(self) -> None:
        write_pool_heartbeat(
            self.layout,
            PoolHeartbeat(
                pool=self.name,
                profile=self.profile.name,
                size=self.size,
                heartbeat_at=utc_now(),
                stale_after_s=STALE_AFTER_S,
            ),
        )

    def members(self, workers: list[WorkerRecord] | None = None) -> list[WorkerRecord]:
        """This pool's workers, running or ended, busy ones with their tasks."""
        found = self.backend.workers.all() if workers is None else workers
        mine = [worker for worker in found if worker.pool == self.name]
        return with_pool_tasks(self.layout, mine)

    def tick(self) -> PoolTick:
        """Recover and remove ended workers, mirror new tasks' repositories, top up."""
        tick = PoolTick()
        workers = with_pool_tasks(self.layout, self.backend.workers.all())
        members = self.members(workers)
        for worker in members:
            if not worker.running:
                self._retire(worker, tick)
        running = [worker for worker in members if worker.running]
        tick.busy = sum(1 for worker in running if worker.task_id)
        tick.idle = len(running) - tick.busy
        self._prepare_tasks(tick, workers)
        missing = self.size - len(running)
        if missing > 0:
            with ThreadPoolExecutor(max_workers=START_THREADS) as starters:
                futures = [starters.submit(self.start_worker) for _ in range(missing)]
            for future in futures:
                try:
                    tick.started.append(future.result())
                except EngineBusy as error:  # an overloaded engine: the next tick tries again
                    logger.warning("%s", error)
        return tick

    def _retire(self, worker: WorkerRecord, tick: PoolTick, *, remove: bool = False) -> None:
        """An ended worker: write the result it could not. One that ran a task is kept (its
        output stays readable with ``logs ID --worker``) until the pool stops or ``cleanup``;
        one that never took a task is removed with its record."""
        if worker.task_id and worker.name not in self._handled:
            recovery = recover_ended_worker(
                self.layout, self.backend, worker, self.context.secrets
            )
            self._handled.add(worker.name)
            if recovery is not None:
                logger.warning("%s", recovery.error)
                tick.recovered.append(recovery)
        if remove or not worker.task_id:
            self.backend.workers.remove(worker.name)
            remove_pool_worker(self.layout, self.name, worker.name)
            tick.removed.append(worker.name)

    def _prepare_tasks(self, tick: PoolTick, workers: list[WorkerRecord]) -> None:
        """Mirror the repository of each ready task of this profile (workers clone only from a
        mirror), and write the result of a lost one (its lease ran out, no container left)."""
        if self._live is None:
            return
        board = self._live.refresh()
        alive: dict[str, bool] = {}
        for worker in workers:
            if worker.task_id:
                alive[worker.task_id] = alive.get(worker.task_id, False) or worker.running
        states = board.states(now=utc_now(), container_alive=alive)
        for task_id, state in states.items():
            snapshot = board.snapshots[task_id]
            task = snapshot.task
            if state == TaskState.LOST:
                recovery = recover_lost_task(
                    self.layout, self.backend, snapshot, self.context.secrets
                )
                if recovery is not None:
                    self._live.invalidate([task_id])
                    tick.recovered.append(recovery)
            elif state == TaskState.PENDING and task and task_profile(task) == self.profile.name:
                try:
                    self.context.mirror(task)
                except TASK_ERRORS as error:
                    recovery = fail_unstartable(
                        self.layout, task_id, snapshot.attempt + 1, str(error)
                    )
                    if recovery is not None:
                        tick.recovered.append(recovery)

    def start_worker(self) -> str:
        """Start one idle worker; its name."""
        name = self.backend.names.pool_worker(self.name, secrets.token_hex(4))
        env = worker_env_named(self.context, name, self.profile)
        env[ENV_POOL] = self.name
        env[ENV_POOL_PROFILE] = self.profile.name
        self.backend.workers.spawn_idle(
            IdleSpawnRequest(
                name=name,
                pool=self.name,
                profile=self.profile,
                env=env,
                mounts=tuple(self.context.settings.mounts),
            )
        )
        return name

    # --- the loop ------------------------------------------------------------------------------

    def run(
        self,
        stop: threading.Event,
        on_tick: Callable[[PoolTick], None] | None = None,
    ) -> None:
        """Keep the pool full until ``stop`` is set, then stop every worker and remove it."""
        self.beat()
        beating = threading.Thread(target=self._keep_beating, daemon=True)
        beating.start()  # apart from the ticks: starting many workers may take longer than a beat
        if self.context.settings.repo_url:
            with contextlib.suppress(*TASK_ERRORS):
                self.context.mirror_url(self.context.settings.repo_url)
        live = LiveBoard(self.layout, wake_on=("task", "result"))
        halt_exits = threading.Event()
        try:
            with live:
                self._live = live
                self.backend.workers.watch_exits(
                    lambda worker: live.wake.set() if worker.pool == self.name else None,
                    halt_exits,
                )
                threading.Thread(
                    target=_set_when, args=(stop, live.wake), name="pool-stop", daemon=True
                ).start()
                while not stop.is_set():
                    live.wake.clear()
                    tick = self.tick()
                    if on_tick is not None:
                        on_tick(tick)
                    live.wake.wait(BEAT_S)
        finally:
            halt_exits.set()
            self._live = None
            self._stopping.set()
            beating.join()
            self.shutdown()

    def _keep_beating(self) -> None:
        while not self._stopping.wait(BEAT_S):
            with contextlib.suppress(OSError):
                self.beat()

    def shutdown(self) -> list[str]:
        """Stop the pool: idle workers end at once (no heartbeat, then SIGTERM), a busy one ends
        its task as ``docker stop`` ends a cold worker's; every container and record is removed."""
        remove_pool_heartbeat(self.layout, self.name)
        members = self.members()

        def end(worker: WorkerRecord) -> str:
            if worker.running:
                self.backend.workers.stop(worker.name, timeout_s=STOP_TIMEOUT_S)
            ended = dataclasses.replace(worker, running=False)
            with contextlib.suppress(ManagerError, OSError):
                self._retire(ended, PoolTick(), remove=True)
            return worker.name

        with ThreadPoolExecutor(max_workers=max(1, min(16, len(members)))) as stoppers:
            removed = list(stoppers.map(end, members))
        with contextlib.suppress(OSError):
            (self.layout.root / "pool" / self.name / "workers").rmdir()
            (self.layout.root / "pool" / self.name).rmdir()
        return removed


def _set_when(stop: threading.Event, wake: threading.Event) -> None:
    stop.wait()
    wake.set()


def wait_for_pool(
    layout: Layout, backend: Backend, pool: str, size: int, timeout_s: float = 60.0
) -> bool:
    """Until ``size`` workers of ``pool`` wait idle (for tests and benchmarks); True if they do."""

    def enough_idle() -> bool:
        members = [worker for worker in backend.workers.all() if worker.pool == pool]
        idle = idle_pool_workers(layout, with_pool_tasks(layout, members))
        return sum(idle.values()) >= size

    return bool(poll_until(enough_idle, timeout_s=timeout_s, interval_s=0.1))
