"""A warm pool worker: wait idle for a task of one profile, claim it, run it, exit.

The worker files an idle record (``pool/<pool>/workers/<name>.json``), follows the volume with
the protocol's watcher, and on every event (and every second) looks at the tasks that may have
become claimable: pending ones of its profile whose dependencies succeeded, and failed or timed
out ones with attempts left, whose repository the volume already mirrors. It claims through
``claim_task``, so of several idle workers racing for one task one wins and the others stay idle.
It never takes a task it would have to take over (``lost``: the manager, which can see
containers, recovers those), a cancelled one, or one of another profile.

While idle it holds no claim and no caller token (that is minted by :class:`Attempt` after the
claim, as for a cold worker) and runs nothing but this loop. It ends without a task on SIGTERM
(at once) and when its pool's heartbeat is gone or stale (its manager stopped or died).
"""

from __future__ import annotations

import signal
import sys
import threading

from orchestration_protocol import (
    ClaimHandle,
    Layout,
    ProtocolError,
    ProtocolEvent,
    ProtocolWatcher,
    Task,
    TaskState,
    claim_task,
    next_attempt,
    read_task_state,
    utc_now,
)
from orchestration_protocol.contract import WorkerExit
from orchestration_protocol.mirrors import mirror_dir
from orchestration_protocol.pool import (
    PoolWorker,
    PoolWorkerState,
    read_pool_heartbeat,
    remove_pool_worker,
    task_profile,
    write_pool_worker,
)
from orchestration_protocol.priorities import ordered, read_priorities

from .runtime import Attempt, StopFlag
from .settings import WorkerSettings

CHECK_S = 1.0
"""How often an idle worker looks again without an event (blocked tasks, mirrors, its pool)."""
WAITING = frozenset({TaskState.BLOCKED})
"""States that may turn takeable without an event about the task itself."""


def takeable(state: TaskState) -> bool:
    """A pool worker claims what a cold one may, except a lost attempt: the manager, which can
    see containers, writes its result first."""
    return state.may_start_attempt and state != TaskState.LOST


class OpenTasks:
    """The tasks an idle worker still has to look at: every task it was told of, minus those
    that can never be its (final, running, other profile); kept small so each look is cheap."""

    def __init__(self, layout: Layout, settings: WorkerSettings, profile: str) -> None:
        self.layout, self.settings, self.profile = layout, settings, profile
        self.ids: set[str] = set()
        self.lock = threading.Lock()

    def note(self, task_id: str) -> None:
        with self.lock:
            self.ids.add(task_id)

    def _mirrored(self, task: Task) -> bool:
        url = task.repo or self.settings.repo_url
        return not url or (mirror_dir(self.layout, url) / "HEAD").is_file()

    def candidates(self) -> list[Task]:
        """Tasks this worker may claim now, in the queue's order (priorities.csv, then the tasks'
        own priority, then the oldest); drops those it never may."""
        with self.lock:
            ids = sorted(self.ids)
        now, found, dropped = utc_now(), [], []
        for task_id in ids:
            try:
                snapshot, state = read_task_state(self.layout, task_id, now=now)
            except (ProtocolError, ValueError):
                dropped.append(task_id)
                continue
            task = snapshot.task
            if task is None or task_profile(task) != self.profile:
                dropped.append(task_id)
            elif state in WAITING:
                continue
            elif not takeable(state) or next_attempt(snapshot, state) is None:
                dropped.append(task_id)  # running, ended or cancelled: a result event re-adds it
            elif self._mirrored(task):
                found.append(task)
        with self.lock:
            self.ids.difference_update(dropped)
        return ordered(found, read_priorities(self.layout.root))  # the highest, then the oldest

    def claim(self) -> tuple[Task, ClaimHandle] | None:
        for task in self.candidates():
            handle = claim_task(
                self.layout, task.id, worker_id=self.settings.worker_id, lease_s=self.settings.lease_s
            )
            if handle is not None:
                return task, handle
            with self.lock:
                self.ids.discard(task.id)  # another worker won it
        return None


class PoolMember:
    """This worker's place in its pool: its record, and whether the pool still beats."""

    def __init__(self, layout: Layout, name: str, pool: str, profile: str) -> None:
        self.layout, self.name, self.pool, self.profile = layout, name, pool, profile

    def file(self, state: PoolWorkerState, handle: ClaimHandle | None = None) -> None:
        write_pool_worker(
            self.layout,
            PoolWorker(
                name=self.name,
                pool=self.pool,
                profile=self.profile,
                state=state,
                since=utc_now(),
                task_id=handle.task_id if handle else None,
                attempt=handle.attempt if handle else None,
            ),
        )

    def leave(self) -> None:
        remove_pool_worker(self.layout, self.pool, self.name)

    def orphaned(self) -> str | None:
        """Why the pool no longer wants this worker (its heartbeat is gone or stale), or None."""
        heartbeat = read_pool_heartbeat(self.layout, self.pool)
        if heartbeat is None:
            return f"pool {self.pool} has stopped"
        if heartbeat.is_stale():
            return f"pool {self.pool} stopped beating at {heartbeat.heartbeat_at.isoformat()}"
        return None


def wait_for_task(
    settings: WorkerSettings, member: PoolMember, stop: StopFlag, wake: threading.Event
) -> tuple[Task, ClaimHandle] | None:
    """Idle until a task is claimed (returned) or the worker must end (None)."""
    layout = Layout(settings.root)
    tasks = OpenTasks(layout, settings, member.profile)

    def on_event(event: ProtocolEvent) -> None:
        tasks.note(event.task_id)
        wake.set()

    watcher = ProtocolWatcher(settings.root, on_event, kinds=("task", "result", "cancel"))
    with watcher:
        while stop.reason is None:
            why = member.orphaned()
            if why is not None:
                print(f"orchestrator-worker: {why}; {member.name} ends idle.", flush=True)
                return None
            wake.clear()
            taken = tasks.claim()
            if taken is not None:
                return taken
            wake.wait(CHECK_S)
    print(f"orchestrator-worker: {stop.reason}; {member.name} ends idle.", flush=True)
    return None


def run_warm(settings: WorkerSettings, stop: StopFlag, pool: str, profile: str) -> int:
    """Wait for one task of ``profile``, run it like a cold worker, and exit; 0 when a result
    was written or the worker ended idle, 4 when the claim was lost."""
    layout = Layout(settings.root).ensure()
    member = PoolMember(layout, settings.worker_id, pool, profile)
    wake = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set(f"stopped by {signal.Signals(signum).name} (docker stop or Ctrl-C)")
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    member.file(PoolWorkerState.IDLE)
    try:
        taken = wait_for_task(settings, member, stop, wake)
    except BaseException:
        member.leave()
        raise
    if taken is None:
        member.leave()
        return WorkerExit.OK
    task, handle = taken
    member.file(PoolWorkerState.BUSY, handle)
    print(f"orchestrator-worker: {member.name} claimed {task.id} attempt {handle.attempt}", flush=True)
    sys.stdout.flush()
    result = Attempt(settings, task, handle, stop).run()
    return WorkerExit.OK if result is not None else WorkerExit.CLAIM_LOST
