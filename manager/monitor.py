"""Following the board as it changes, driven by the protocol watcher (inotify, or polling where
inotify cannot see writes): ``wait`` and ``watch`` re-read the volume when a protocol file
changes, and on a slow timer only for what time alone changes (ages, leases running out)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from orchestration_protocol import (
    Board,
    Layout,
    ProtocolWatcher,
    TaskState,
    read_board,
    utc_now,
)
from orchestration_protocol.watcher import WatchKind

from .errors import NotFinished, TaskUnknown
from .progress import Progress, assess

TIMER_S = 5.0
DEBOUNCE_S = 0.2


@dataclass(frozen=True)
class View:
    """The board at one moment, with every task's state and the progress of the scope."""

    board: Board
    states: dict[str, TaskState]
    progress: Progress
    now: datetime


def read_view(layout: Layout, scope: list[str] | None) -> View:
    """Read the volume once."""
    board = read_board(layout)
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
    """Call ``on_view`` with a fresh view at start and after every change, until it returns
    True (then return that view); NotFinished when ``timeout_s`` runs out first."""
    stop = stop or threading.Event()
    wake = threading.Event()
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    with ProtocolWatcher(layout.root, lambda _event: wake.set(), kinds=kinds):
        while True:
            wake.clear()
            view = read_view(layout, scope)
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
            if wake.wait(wait):
                stop.wait(DEBOUNCE_S)
