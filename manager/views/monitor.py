"""Following the board as it changes, driven by the protocol watcher (inotify, or polling where
inotify cannot see writes).

A :class:`LiveBoard` reads the volume once, then re-reads only the tasks whose files the watcher
reports changed; a slow timer re-derives the states for what time alone changes (leases running
out, ages), and a rare full read picks up what no event names (stray files in ``tasks/``). So a
board of a thousand finished tasks costs next to nothing to follow.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from orchestration_protocol import (
    Board,
    Layout,
    ProtocolEvent,
    ProtocolWatcher,
    TaskState,
    read_board,
    read_snapshot,
    utc_now,
)
from orchestration_protocol.watcher import ALL_KINDS, WatchKind
from orchestration_views.progress import Progress, assess

from ..errors import NotFinished, TaskUnknown

TIMER_S = 5.0
DEBOUNCE_S = 0.2
RESCAN_S = 30.0
"""How often the watcher reconciles with a directory scan (inotify overflow is silent)."""
FULL_READ_S = 120.0
"""How often the whole volume is read again (stray files raise no event)."""


class LiveBoard:
    """The board, kept current from watcher events; ``wake`` is set by the events that matter."""

    def __init__(
        self,
        layout: Layout,
        *,
        kinds: Iterable[WatchKind] = ALL_KINDS,
        wake_on: Iterable[WatchKind] | None = None,
    ) -> None:
        self.layout = layout
        self.wake = threading.Event()
        self.board = Board()
        self._wake_on = frozenset(wake_on if wake_on is not None else kinds)
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._next_full_read = 0.0
        self._watcher = ProtocolWatcher(
            layout.root, self._on_event, kinds=kinds, rescan_interval_s=RESCAN_S
        )

    def _on_event(self, event: ProtocolEvent) -> None:
        if event.task_id:  # a priorities.csv event names no task
            with self._lock:
                self._dirty.add(event.task_id)
        if event.kind in self._wake_on:
            self.wake.set()

    def invalidate(self, task_ids: Iterable[str]) -> None:
        """Have these tasks read again at the next refresh."""
        with self._lock:
            self._dirty.update(task_ids)

    def refresh(self) -> Board:
        """The board, with every changed task read again."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        if time.monotonic() >= self._next_full_read:
            self.board = read_board(self.layout)
            self._next_full_read = time.monotonic() + FULL_READ_S
            return self.board
        for task_id in dirty:
            if os.path.lexists(self.layout.task_file(task_id)):
                self.board.snapshots[task_id] = read_snapshot(self.layout, task_id)
            else:
                self.board.snapshots.pop(task_id, None)
        return self.board

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
) -> View:
    """Call ``on_view`` with a fresh view at start and after every change of the ``kinds`` of
    file (and every ``timer_s``), until it returns True (then return that view); NotFinished
    when ``timeout_s`` runs out first."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    kinds = tuple(kinds)
    watched = (*ALL_KINDS, *(kind for kind in kinds if kind not in ALL_KINDS))
    with LiveBoard(layout, kinds=watched, wake_on=kinds) as live:  # heartbeats: no wake
        while True:
            live.wake.clear()
            view = view_of(live.refresh(), scope)
            if on_view(view) or stop.is_set():
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
