"""What the dashboard shows, read from the volume through the protocol and orchestration_views.

:class:`BoardModel` holds the board between changes: it reads the whole volume once, then only
the tasks the watcher names and a share of the rest (the sweep), and turns what changed into
rows (one JSON object per task, with its attempts for the timeline) and a summary (counts by
state, total cost, fleet budget, unusable files), each version numbered (``seq``);
:mod:`dashboard.window` cuts the part a page shows out of a version. Everything here only
reads; nothing writes to the volume.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestration_protocol import (
    Board,
    Claim,
    InvalidFile,
    Layout,
    Result,
    TaskSnapshot,
    TaskState,
    read_board,
    read_model_if_exists,
    read_snapshot,
    utc_now,
)
from orchestration_protocol.board_cache import cache_for
from orchestration_protocol.paths import is_hidden, task_id_from_filename
from orchestration_protocol.priorities import Priorities, read_priorities
from orchestration_views.ledger import LedgerCache, LedgerSummary, fleet_budget_view
from orchestration_views.rows import board_problems, root_problem, task_row

from .window import View, WindowQuery, page_order

PROMPT_IN_ROW = 300
"""Characters of a prompt in the board's rows (a thousand long prompts would weigh megabytes)."""
SWEEP_S = 120.0
"""Every task is read again within this long, a few at each refresh: a removed file, a cost the
ledger added late and a file the watcher missed raise no event. ``tasks/`` is listed again at
the end of each round (a task that came or went, a stray file there)."""
SWEEP_BATCH = 500
"""The most tasks one refresh reads again for the sweep (on a board so large that the round
would need more, it takes longer than ``SWEEP_S``): a change waits for no more."""


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def attempt_spans(
    layout: Layout, snapshot: TaskSnapshot, state: TaskState, ledger: LedgerSummary | None
) -> list[dict[str, Any]]:
    """One entry per attempt made, oldest first: who ran it, from when to when, how it ended,
    and what it cost (for the timeline)."""
    spans = []
    for attempt in range(1, snapshot.attempt + 1):
        claim = _quiet_read(layout.claim_file(snapshot.task_id, attempt), Claim, snapshot.task_id)
        result = _result_of(layout, snapshot, attempt)
        status = (
            snapshot.current_status
            if snapshot.claim and snapshot.claim.attempt == attempt
            else None
        )
        started = (
            (result.started_at if result else None)
            or (status.started_at if status else None)
            or (claim.claimed_at if claim else None)
        )
        if result is not None:
            outcome = result.status.value
        elif attempt == snapshot.attempt and state in (TaskState.RUNNING, TaskState.LOST):
            outcome = state.value
        else:
            outcome = "unknown"
        spans.append(
            {
                "attempt": attempt,
                "worker": (result.worker_id if result else None)
                or (claim.worker_id if claim else None),
                "started_at": _iso(started),
                "ended_at": _iso(result.completed_at) if result else None,
                "heartbeat_at": _iso(status.heartbeat_at) if status else None,
                "outcome": outcome,
                "error": result.error if result else None,
                "cost_usd": ledger.by_attempt.get(attempt)
                if ledger
                else (result.cost_usd if result else None),
            }
        )
    return spans


def _quiet_read(path: Path, model: type[Any], task_id: str) -> Any:
    try:
        return read_model_if_exists(path, model, task_id)
    except InvalidFile:
        return None


def _result_of(layout: Layout, snapshot: TaskSnapshot, attempt: int) -> Result | None:
    if snapshot.result is not None and snapshot.result.attempt == attempt:
        return snapshot.result
    found = _quiet_read(
        layout.archived_result_file(snapshot.task_id, attempt), Result, snapshot.task_id
    )
    return found if isinstance(found, Result) else None


def dashboard_row(
    layout: Layout,
    snapshot: TaskSnapshot,
    state: TaskState,
    now: datetime,
    ledger: LedgerSummary | None,
    priorities: Priorities | None = None,
) -> dict[str, Any]:
    """``orchestrator status``'s row of a task, plus what the board draws: its attempts, the
    files it changed and the times of its current attempt."""
    row = task_row(snapshot, state, now, ledger, priorities)
    for moving in ("age_s", "heartbeat_age_s"):  # the page counts these itself, from the times
        row.pop(moving, None)
    if row["prompt"] and len(row["prompt"]) > PROMPT_IN_ROW:  # the whole one is in the details
        row["prompt"] = row["prompt"][:PROMPT_IN_ROW] + "…"
    result = snapshot.current_result
    status = snapshot.current_status
    row["attempts"] = attempt_spans(layout, snapshot, state, ledger)
    row["files_changed"] = list(result.files_changed) if result else []
    row["insertions"] = result.insertions if result else 0
    row["deletions"] = result.deletions if result else 0
    row["heartbeat_at"] = _iso(status.heartbeat_at) if status and not result else None
    row["status_message"] = status.message if status and not result else None
    row["completed_at"] = _iso(result.completed_at) if result else None
    row["cancel_requested"] = snapshot.cancel is not None
    row["requests"] = ledger.requests if ledger else 0
    return row


@dataclass
class Delta:
    """What changed since the last refresh: rows to replace, ids gone, and the new summary."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    """The board's version after this refresh; one more than before when anything changed."""

    @property
    def empty(self) -> bool:
        return not self.rows and not self.removed


@dataclass(frozen=True)
class Published:
    """One version of the board, swapped in whole: a reader sees rows and summary of the same
    refresh, and the version that names them."""

    seq: int = 0
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


VIEWS_KEPT = 8
"""Views (ordered and filtered rows) kept per version of the board: the pages open at once."""


class BoardModel:
    """The board as the dashboard shows it, kept current by :meth:`refresh`."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.ledgers = LedgerCache(layout)
        self.board = Board()
        self.rows: dict[str, dict[str, Any]] = {}
        self.states: dict[str, TaskState] = {}
        self.summary: dict[str, Any] = {}
        self.priorities = Priorities()
        self.published = Published()
        self._sweep: list[str] = []
        """The tasks still to read again in this round of the sweep, the next one last."""
        self._swept_at = 0.0
        self._next_listing = 0.0
        self._strays: list[str] = []
        self._lock = threading.Lock()
        self._views: OrderedDict[tuple[int, str | None, str], View] = OrderedDict()
        self._views_lock = threading.Lock()

    def refresh(self, dirty: set[str] | None, *, monotonic: float) -> Delta:
        """Read the tasks in ``dirty`` again with the sweep's share (everything when None, or
        when the stray files in ``tasks/`` changed), derive every state, and return the rows
        whose task or state changed; the board's version goes up when anything did."""
        with self._lock:
            delta = self._read(dirty, monotonic)
            seq = self.published.seq
            if not delta.empty or delta.summary is not self.published.summary:
                seq += 1
                self.published = Published(seq, self.rows, self.summary)
            delta.seq = seq
            return delta

    def _read(self, dirty: set[str] | None, monotonic: float) -> Delta:
        problem = root_problem(self.layout)
        if problem is not None:
            removed = list(self.rows)
            self.board, self.rows, self.states = Board(), {}, {}
            summary = self._summary(problem)
            if summary != self.summary:
                self.summary = summary
            return Delta(removed=removed, summary=self.summary)
        swept = self._swept(monotonic) if dirty is not None else None
        if dirty is None or swept is None:
            self.board = read_board(self.layout)
            self._strays = sorted(str(problem.path) for problem in self.board.stray_files)
            self._start_sweep(monotonic)
            dirty = set(self.board.snapshots) | set(self.rows)
        else:
            dirty = self._read_again(dirty | swept) | swept
        return self._derive(dirty)

    def _read_again(self, dirty: set[str]) -> set[str]:
        """Read the tasks the watcher named again (a file unchanged since the last read is not
        read: the board cache checks its signature); those whose snapshot is the same are left
        out. The watcher's first scan names every file once, right after the start's full read
        read them all: this keeps it from costing a second full read."""
        cache = cache_for(self.layout.root)
        changed = set()
        for task_id in dirty:
            if not os.path.lexists(self.layout.task_file(task_id)):
                if self.board.snapshots.pop(task_id, None) is not None:
                    changed.add(task_id)
                continue
            snapshot = read_snapshot(self.layout, task_id, cache)
            if snapshot != self.board.snapshots.get(task_id):
                self.board.snapshots[task_id] = snapshot
                changed.add(task_id)
        return changed

    def _start_sweep(self, monotonic: float) -> None:
        self._sweep = sorted(self.board.snapshots, reverse=True)
        self._swept_at = monotonic
        self._next_listing = monotonic + SWEEP_S

    def _swept(self, monotonic: float) -> set[str] | None:
        """The tasks the sweep reads again now: its share of the time since the last refresh,
        or, at the end of a round, the tasks that came or went since ``tasks/`` was listed.
        None when the stray files there changed (the whole volume is read again, as at start:
        they are rare)."""
        if self._sweep:
            rate = len(self.board.snapshots) / SWEEP_S
            due = min(SWEEP_BATCH, int((monotonic - self._swept_at) * rate))
            if due <= 0:
                return set()
            self._swept_at = monotonic
            taken = self._sweep[-due:]
            del self._sweep[-due:]
            return set(taken)
        if monotonic < self._next_listing:
            return set()
        try:
            names = [name for name in os.listdir(self.layout.tasks_dir) if not is_hidden(name)]
        except FileNotFoundError:
            names = []
        ids = {task_id for name in names if (task_id := task_id_from_filename(name))}
        strays = sorted(
            str(self.layout.tasks_dir / name) for name in names if not task_id_from_filename(name)
        )
        if strays != self._strays:
            return None
        came_or_went = ids ^ set(self.board.snapshots)
        self._start_sweep(monotonic)
        return came_or_went

    def _derive(self, dirty: set[str]) -> Delta:
        now = utc_now()
        states = self.board.states(now=now)
        changed = set(dirty) | {i for i, s in states.items() if self.states.get(i) != s}
        priorities = read_priorities(self.layout.root)
        if priorities != self.priorities:  # every row may have a new priority
            self.priorities = priorities
            changed |= set(states)
        changed |= {i for i, s in states.items() if s == TaskState.RUNNING}  # cost, heartbeat
        delta = Delta()
        rows = dict(self.rows)  # readers hold the old dict meanwhile: no lock on their side
        for task_id in sorted(changed):
            snapshot = self.board.snapshots.get(task_id)
            if snapshot is None:
                if rows.pop(task_id, None) is not None:
                    delta.removed.append(task_id)
                continue
            row = dashboard_row(
                self.layout,
                snapshot,
                states[task_id],
                now,
                self.ledgers.summary(task_id),
                self.priorities,
            )
            if rows.get(task_id) != row:
                rows[task_id] = row
                delta.rows.append(row)
        self.rows, self.states = rows, states
        summary = self._summary(None)
        if delta.rows or delta.removed or summary != self.summary:
            self.summary = summary
        delta.summary = self.summary
        return delta

    def _summary(self, problem: str | None) -> dict[str, Any]:
        counts = Counter(state.value for state in self.states.values())
        costs = [row["cost_usd"] for row in self.rows.values() if row["cost_usd"] is not None]
        fleet = fleet_budget_view(self.layout, self.ledgers) if problem is None else None
        return {
            "root": str(self.layout.root),
            "root_problem": problem,
            "tasks": len(self.rows),
            "counts": dict(sorted(counts.items())),
            "total_cost_usd": sum(costs),
            "fleet_budget": fleet,
            "problems": board_problems(self.board, self.priorities) if problem is None else [],
        }

    def view(self, published: Published, state: str | None, needle: str) -> View:
        """The rows of one view at one version, ordered for the page (kept for the next page's
        request: ordering ten thousand rows is the costly part)."""
        key = (published.seq, state, needle)
        with self._views_lock:
            found = self._views.get(key)
            if found is not None:
                self._views.move_to_end(key)
                return found
            base = self._views.get((published.seq, None, ""))
        ordered = base.rows if base is not None else page_order(list(published.rows.values()))
        if base is None and (state is not None or needle):
            self._keep((published.seq, None, ""), View(ordered, None, ""))
        made = View(ordered, state, needle)
        self._keep(key, made)
        return made

    def _keep(self, key: tuple[int, str | None, str], view: View) -> None:
        with self._views_lock:
            self._views[key] = view
            while len(self._views) > VIEWS_KEPT:
                self._views.popitem(last=False)

    def window(self, query: WindowQuery | None = None) -> dict[str, Any]:
        """What ``/api/board`` answers, and the page gets first: the view's rows from
        ``offset`` (at most ``limit``), how many the view holds, its timeline, the summary, and
        the version (``seq``) they are of. Never waits for a refresh: it reads the version a
        refresh last swapped in whole."""
        query = query or WindowQuery()
        published = self.published
        state = query.state.value if query.state else None
        view = self.view(published, state, query.needle)
        return {
            "type": "board",
            "seq": published.seq,
            "offset": query.offset,
            "total": len(view.rows),
            "rows": view.rows[query.offset : query.offset + query.limit],
            "timeline": view.lanes,
            "summary": published.summary,
        }
