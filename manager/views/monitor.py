"""Following the board as it changes, driven by the protocol watcher (inotify, or polling where
inotify cannot see writes).

A :class:`LiveBoard` reads the volume once, then re-reads only the tasks whose files the watcher
reports changed (through the board cache: only the changed file is parsed), and derives every
task's state again only after such a change; on a timer it re-derives just the tasks that time
alone changes (claimed, no result yet: a lease runs out). What raises no event (a file removed,
a stray file in ``tasks/``, a task's first ``rounds/`` folder) is found by a rare look at the
directories: one ``stat`` of each, and a listing of one whose signature changed. So an idle
board of ten thousand tasks costs nothing per task to follow.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from orchestration_protocol import (
    Board,
    Layout,
    ProtocolEvent,
    ProtocolWatcher,
    TaskState,
    derive_state,
    read_board,
    read_snapshot,
    utc_now,
)
from orchestration_protocol.board_cache import cache_for
from orchestration_protocol.paths import task_id_from_filename
from orchestration_protocol.rounds import ROUNDS_DIR
from orchestration_protocol.state import directory_names, stray_file
from orchestration_protocol.watcher import ALL_KINDS, DirectoryMarks, WatchKind
from orchestration_views.progress import Progress, assess

from ..errors import NotFinished, TaskUnknown

TIMER_S = 5.0
DEBOUNCE_S = 0.2
RESCAN_S = 30.0
"""How often the watcher reconciles with a directory scan (of a directory that changed)."""
RECONCILE_S = 30.0
"""How often the directories are looked at for what raises no event (removed files, stray
files, new ``rounds/`` folders)."""
_LISTED: dict[str, str] = {
    "tasks": ".json",
    "status": ".json",
    "results": ".json",
    "control": ".cancel",
    ROUNDS_DIR: "",
}
"""The directories the rare look lists when they changed, and how their files end (a
``rounds/`` entry is a task's folder, named by its id)."""


def _task_of(directory: str, name: str) -> str | None:
    if not _LISTED[directory]:
        return name if task_id_from_filename(f"{name}.json") else None
    return task_id_from_filename(name, _LISTED[directory])


class LiveBoard:
    """The board, kept current from watcher events; ``wake`` is set by the events that matter."""

    def __init__(
        self,
        layout: Layout,
        *,
        kinds: Iterable[WatchKind] = ALL_KINDS,
        wake_on: Iterable[WatchKind] | None = None,
        rescan_s: float = RESCAN_S,
        reconcile_s: float = RECONCILE_S,
    ) -> None:
        self.layout = layout
        self.wake = threading.Event()
        self.board = Board()
        self.reconcile_s = reconcile_s
        self._wake_on = frozenset(wake_on if wake_on is not None else kinds)
        self._dirty: set[str] = set()
        self._changed = True
        """Whether anything was read again (or priorities changed) since :meth:`states`."""
        self._lock = threading.Lock()
        self._read = False
        self._next_reconcile = 0.0
        self._marks = DirectoryMarks()
        self._listed: dict[str, frozenset[str]] = {}
        self._states: dict[str, TaskState] | None = None
        self._timed: dict[str, TaskState] = {}
        """The states that time alone may change (claimed, no result), as last derived."""
        self._alive: dict[str, bool] = {}
        self._watcher = ProtocolWatcher(
            layout.root, self._on_event, kinds=kinds, rescan_interval_s=rescan_s,
            report_existing=False,  # the first refresh reads what exists
        )

    def _on_event(self, event: ProtocolEvent) -> None:
        with self._lock:
            if event.task_id:
                self._dirty.add(event.task_id)
            else:  # priorities.csv: no task, but the queue's order
                self._changed = True
        if event.kind in self._wake_on:
            self.wake.set()

    def invalidate(self, task_ids: Iterable[str]) -> None:
        """Have these tasks read again at the next refresh."""
        with self._lock:
            self._dirty.update(task_ids)

    def refresh(self) -> Board:
        """The board, with every changed task read again."""
        if not self._read:
            self._reconcile()  # notes the listings before the read: later changes show
            with self._lock:  # what changes from here on is read again at the next refresh
                self._dirty.clear()
                self._changed = True
            self.board = read_board(self.layout)
            self._read = True
            return self.board
        if time.monotonic() >= self._next_reconcile:
            self._reconcile()
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            self._changed = self._changed or bool(dirty)
        cache = cache_for(self.layout.root)
        for task_id in dirty:
            if os.path.lexists(self.layout.task_file(task_id)):
                self.board.snapshots[task_id] = read_snapshot(self.layout, task_id, cache)
            else:
                self.board.snapshots.pop(task_id, None)
        return self.board

    def _reconcile(self) -> None:
        """List each directory of :data:`_LISTED` that changed since it was last listed; the
        tasks whose files came or went are read again, and the stray files are found again."""
        self._next_reconcile = time.monotonic() + self.reconcile_s
        for name in _LISTED:
            directory = self.layout.root / name
            if not self._marks.changed(directory):
                continue
            names = directory_names(directory)
            before, self._listed[name] = self._listed.get(name), names
            if before is None:
                continue  # the first look: the board is read whole next
            came_or_went = {_task_of(name, entry) for entry in names ^ before}
            with self._lock:
                self._dirty.update(task_id for task_id in came_or_went if task_id)
                if None in came_or_went and name == "tasks":
                    self.board.stray_files = [
                        stray_file(self.layout, entry)
                        for entry in sorted(names)
                        if not entry.startswith(".") and task_id_from_filename(entry) is None
                    ]
                    self._changed = True

    def states(
        self, *, now: datetime, container_alive: Mapping[str, bool] | None = None
    ) -> tuple[dict[str, TaskState], bool]:
        """Every task's state at ``now``, and whether any may differ from the last answer. All
        are derived again after a change (a task read again, priorities, other live
        containers); otherwise only those that time alone changes, and the last answer is
        given again when none of them did."""
        alive = dict(container_alive or {})
        with self._lock:
            changed, self._changed = self._changed, False
        if not changed and self._states is not None and alive == self._alive:
            snapshots = self.board.snapshots
            if all(
                derive_state(snapshots[task_id], now=now, container_alive=alive.get(task_id))
                == state
                for task_id, state in self._timed.items()
            ):
                return self._states, False
        self._states = self.board.states(now=now, container_alive=alive)
        self._alive = alive
        self._timed = {
            task_id: self._states[task_id]
            for task_id, snapshot in self.board.snapshots.items()
            if snapshot.task is not None
            and snapshot.claim is not None
            and snapshot.current_result is None
        }
        return self._states, True

    def __enter__(self) -> LiveBoard:
        self._watcher.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._watcher.stop()


@dataclass(frozen=True)
class View:
    """The board at one moment, with every task's state and the progress of the scope."""

    board: Board
    states: dict[str, TaskState]
    progress: Progress
    now: datetime


def view_of(board: Board, scope: list[str] | None) -> View:
    """States and progress of ``board`` now."""
    now = utc_now()
    states = board.states(now=now)
    return View(board, states, assess(board, states, scope), now)


def check_scope(board: Board, ids: Iterable[str]) -> list[str]:
    """``ids`` as a list; TaskUnknown for one that is not on the volume."""
    ids = list(ids)
    for task_id in ids:
        if task_id not in board.snapshots:
            raise TaskUnknown(
                f"No task {task_id!r} on the volume; check the id with 'orchestrator status'."
            )
    return ids


def follow(
    layout: Layout,
    scope: list[str] | None,
    on_view: Callable[[View], bool],
    *,
    kinds: Iterable[WatchKind] = ("task", "result", "cancel"),
    timeout_s: float | None = None,
    timer_s: float = TIMER_S,
    stop: threading.Event | None = None,
    every_timer: bool = False,
) -> View:
    """Call ``on_view`` with a fresh view at start and after every change of the ``kinds`` of
    file (and after a timer tick that changed a state; after every tick with ``every_timer``,
    for a view that shows ages), until it returns True (then return that view); TaskUnknown
    for a task of ``scope`` not on the volume; NotFinished when ``timeout_s`` runs out first."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    kinds = tuple(kinds)
    watched = (*ALL_KINDS, *(kind for kind in kinds if kind not in ALL_KINDS))
    view: View | None = None
    with LiveBoard(layout, kinds=watched, wake_on=kinds) as live:  # heartbeats: no wake
        while True:
            live.wake.clear()
            board = live.refresh()
            if view is None and scope:
                scope = check_scope(board, scope)
            now = utc_now()
            states, changed = live.states(now=now)
            if view is None or changed or every_timer:
                view = View(board, states, assess(board, states, scope), now)
                if on_view(view):
                    return view
            if stop.is_set():
                return view
            wait = timer_s
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NotFinished(
                        f"Not finished after {timeout_s:g}s ({view.progress.summary()}); wait "
                        "longer with a bigger --timeout, or see 'orchestrator status'."
                    )
                wait = min(wait, left)
            if live.wake.wait(wait):
                stop.wait(DEBOUNCE_S)
