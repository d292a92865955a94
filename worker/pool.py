"""A warm pool worker: wait idle for a task of one profile, claim it, run it, exit.

The worker follows the volume with the protocol's watcher, then files its idle record
(``pool/<pool>/workers/<name>.json``); on every event about a task it looks at the tasks that
may have become claimable: pending ones of its profile whose dependencies succeeded, and failed
or timed out ones with attempts left, whose repository the volume already mirrors. It claims
through ``claim_task``, so of several idle workers racing for one task one wins and the others
stay idle. It never takes a task it would have to take over (``lost``: the manager, which can
see containers, recovers those), a cancelled one, or one of another profile.

When many tasks appear at once (a fan-out onto a pool), every idle worker is told of all of
them. Each tries the tasks in the queue's order, but starting at a place of its own among the
first ``size`` of them (the pool's size) of the highest priority: together they take the tasks
they would take one by one (the oldest first among equal priorities, give or take the pool's
size), without all racing for the first. A task another worker has claimed is seen as such
from the claim's and result's names alone (a task trickling in is claimed by the first worker
to wake, and the others read none of its files); a task's file is read once (it is never
rewritten), its state only when it is tried.

While idle it holds no claim and no caller token (that is minted by :class:`Attempt` after the
claim, as for a cold worker) and runs nothing but this loop, which reads nothing between
events but its pool's heartbeat every ``IDLE_CHECK_S`` (a repository still to be mirrored for a
task it could take: every ``CHECK_S``). It ends without a task on SIGTERM (at once) and when its
pool's heartbeat is gone or stale (its manager stopped or died).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import zlib
from typing import TYPE_CHECKING

from orchestration_protocol import (
    ClaimHandle,
    Layout,
    ProtocolError,
    Task,
    TaskState,
    claim_task,
    next_attempt,
    read_task,
    read_task_state,
    utc_now,
)
from orchestration_protocol.contract import WorkerExit
from orchestration_protocol.mirrors import mirror_dir
from orchestration_protocol.paths import is_hidden
from orchestration_protocol.pool import (
    PoolHeartbeat,
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

if TYPE_CHECKING:
    from orchestration_protocol.watcher import ProtocolEvent

CHECK_S = 1.0
"""How often an idle worker looks again while a task it could take waits for its mirror."""
IDLE_CHECK_S = 10.0
"""How often an idle worker with nothing to wait for reads its pool's heartbeat (it ends once the
pool has stopped beating; a pool that stops cleanly tells its workers at once with SIGTERM)."""
RESCAN_S = 30.0
"""How often the idle worker's watcher lists the volume's folders again (in case inotify dropped
an event: a missed task is started cold by the dispatcher anyway)."""
WAITING = frozenset({TaskState.BLOCKED})
"""States that may turn takeable without an event about the task itself."""


def takeable(state: TaskState) -> bool:
    """A pool worker claims what a cold one may, except a lost attempt: the manager, which can
    see containers, writes its result first."""
    return state.may_start_attempt and state != TaskState.LOST


def spread(queue: list[Task], window: int, start: int) -> list[Task]:
    """``queue`` with its first ``window`` tasks rotated to begin at ``start`` (modulo): the
    same tasks, each worker of a pool trying them from a place of its own."""
    width = min(window, len(queue))
    if width <= 1:
        return queue
    first = start % width
    return queue[first:width] + queue[:first] + queue[width:]


class OpenTasks:
    """The tasks an idle worker still has to look at: every task it was told of, minus those
    that can never be its (final, running, other profile); kept small so each look is cheap."""

    def __init__(self, layout: Layout, settings: WorkerSettings, profile: str) -> None:
        self.layout, self.settings, self.profile = layout, settings, profile
        self.ids: set[str] = set()
        self.tasks: dict[str, Task] = {}
        """The task files read so far (a task file is never rewritten)."""
        self.lock = threading.Lock()
        self.start = zlib.crc32(settings.worker_id.encode())
        """This worker's place among the first tasks of the queue (see :func:`spread`)."""
        self.waiting_for_mirror = False
        """Whether the last look found a task to take whose repository is not mirrored yet."""

    def note(self, task_id: str) -> None:
        with self.lock:
            self.ids.add(task_id)

    def _drop(self, task_id: str) -> None:
        with self.lock:
            self.ids.discard(task_id)

    def _mirrored(self, task: Task) -> bool:
        url = task.repo or self.settings.repo_url
        return not url or (mirror_dir(self.layout, url) / "HEAD").is_file()

    def _taken(self, task_id: str) -> bool:
        """Whether an attempt of the task is claimed and has no result yet (it runs, or was
        lost, which the manager recovers: either way a result event brings it back). Two
        system calls, before any of the task's files is read: of many idle workers told of a
        task at once, one claims it and the others see this."""
        try:
            claims = os.listdir(self.layout.claim_dir(task_id))
        except (FileNotFoundError, NotADirectoryError):
            return False
        claimed = any(not is_hidden(name) for name in claims)
        return claimed and not os.path.lexists(self.layout.result_file(task_id))

    def _task(self, task_id: str) -> Task | None:
        """The task (read once, unless it is taken already), or None when it is taken,
        unreadable or of another profile."""
        task = self.tasks.get(task_id)
        if task is None:
            if self._taken(task_id):
                return None
            try:
                task = read_task(self.layout, task_id)
            except (ProtocolError, ValueError):
                return None
            self.tasks[task_id] = task
        return task if task_profile(task) == self.profile else None

    def queue(self) -> tuple[list[Task], int]:
        """The tasks still to look at, in the queue's order (priorities.csv, then the tasks' own
        priority, then the oldest), and how many of the first ones share the first's priority;
        drops those it never may take."""
        with self.lock:
            ids = sorted(self.ids)
        found = []
        for task_id in ids:
            task = self._task(task_id)
            if task is None:
                self._drop(task_id)
            else:
                found.append(task)
        if not found:
            return [], 0
        priorities = read_priorities(self.layout.root)
        queue = ordered(found, priorities)
        first = priorities.priority_of(queue[0])
        ties = next(
            (n for n, task in enumerate(queue) if priorities.priority_of(task) != first), len(queue)
        )
        return queue, ties

    def _may_claim(self, task: Task) -> bool:
        """Whether ``task`` is one to claim now; drops it when it never will be (running, ended
        or cancelled: a result event brings it back)."""
        if self._taken(task.id):
            self._drop(task.id)
            return False
        try:
            snapshot, state = read_task_state(self.layout, task.id, now=utc_now())
        except (ProtocolError, ValueError):
            self._drop(task.id)
            return False
        if state in WAITING:
            return False
        if not takeable(state) or next_attempt(snapshot, state) is None:
            self._drop(task.id)
            return False
        if not self._mirrored(task):
            self.waiting_for_mirror = True
            return False
        return True

    def claim(self, window: int = 1) -> tuple[Task, ClaimHandle] | None:
        """Claim the first task this worker may take, trying the queue as :func:`spread` says
        for a pool of ``window`` workers, among the first tasks of the highest priority."""
        self.waiting_for_mirror = False
        queue, ties = self.queue()
        for task in spread(queue, min(window, ties), self.start):
            if not self._may_claim(task):
                continue
            handle = claim_task(
                self.layout, task.id, worker_id=self.settings.worker_id, lease_s=self.settings.lease_s
            )
            if handle is not None:
                return task, handle
            self._drop(task.id)  # another worker won it
        return None


class PoolMember:
    """This worker's place in its pool: its record, and whether the pool still beats."""

    def __init__(self, layout: Layout, name: str, pool: str, profile: str) -> None:
        self.layout, self.name, self.pool, self.profile = layout, name, pool, profile
        self.heartbeat: PoolHeartbeat | None = None
        """The pool's heartbeat as last read."""

    @property
    def size(self) -> int:
        """How many workers the pool keeps (1 until its heartbeat was read)."""
        return max(1, self.heartbeat.size) if self.heartbeat is not None else 1

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
        heartbeat = self.heartbeat = read_pool_heartbeat(self.layout, self.pool)
        if heartbeat is None:
            return f"pool {self.pool} has stopped"
        if heartbeat.is_stale():
            return f"pool {self.pool} stopped beating at {heartbeat.heartbeat_at.isoformat()}"
        return None


def wait_for_task(
    settings: WorkerSettings, member: PoolMember, stop: StopFlag, wake: threading.Event
) -> tuple[Task, ClaimHandle] | None:
    """File the idle record once the volume is followed, then wait until a task is claimed
    (returned) or the worker must end (None)."""
    layout = Layout(settings.root)
    tasks = OpenTasks(layout, settings, member.profile)

    def on_event(event: ProtocolEvent) -> None:
        tasks.note(event.task_id)
        wake.set()

    from orchestration_protocol.watcher import ProtocolWatcher  # not at start: see the package

    watcher = ProtocolWatcher(
        settings.root, on_event, kinds=("task", "result", "cancel"), rescan_interval_s=RESCAN_S
    )
    with watcher:
        member.file(PoolWorkerState.IDLE)
        looked = float("-inf")
        while stop.reason is None:
            now = time.monotonic()
            if now - looked >= IDLE_CHECK_S:
                looked = now
                why = member.orphaned()
                if why is not None:
                    print(f"orchestrator-worker: {why}; {member.name} ends idle.", flush=True)
                    return None
            wake.clear()
            taken = tasks.claim(member.size)
            if taken is not None:
                return taken
            pause = CHECK_S if tasks.waiting_for_mirror else IDLE_CHECK_S - (time.monotonic() - looked)
            wake.wait(max(0.0, pause))
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
