"""The part of the board one page shows: a view (every task, the tasks in one state, or those an
id or prompt search finds) in the page's order, one page of rows at a time, and the timeline's
lanes. A board of 10,000 tasks is ten thousand rows the page cannot draw at once (nor a browser
parse as one 7 MB message): the page asks for the first ``PAGE_ROWS`` and for more as it is
scrolled, and follows the rest through the deltas (see ``static/app.js``, which orders and
filters with the same rules so the rows it holds stay the first ones of its view).

The page's order puts what needs attention first: running tasks (newest first), then the tasks
waiting (in the queue's order: the highest priority first, then the oldest), then the rest
(newest first); ties by id.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from orchestration_protocol import TaskState

PAGE_ROWS = 100
"""Rows in the first message and in each page fetched after it."""
MAX_ROWS = 5000
"""The most rows one ``/api/board`` answer holds (ask again with ``offset`` for more)."""
TIMELINE_LANES = 40
"""Tasks in the timeline: the ones of the view whose first attempt started last."""
WAITING = frozenset({TaskState.PENDING.value, TaskState.BLOCKED.value, TaskState.LOST.value})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)

Row = dict[str, Any]


class WindowQuery(BaseModel):
    """What ``/api/board`` is asked for: which tasks (the view) and which of them (the page)."""

    state: TaskState | None = None
    """Only the tasks in this state; None: every task."""
    q: str = ""
    """Only the tasks whose id or prompt (the row's, first 300 characters) contains this,
    ignoring case; empty: every task."""
    offset: int = Field(0, ge=0)
    """How many of the view's rows (in the page's order) to skip."""
    limit: int = Field(PAGE_ROWS, ge=1, le=MAX_ROWS)
    """How many rows to answer at most."""

    @property
    def needle(self) -> str:
        return self.q.strip().lower()


QUERY_PROBLEMS = {
    "state": "state must be one of " + ", ".join(state.value for state in TaskState)
    + "; leave it out for every task.",
    "offset": "offset must be a whole number of rows, 0 or more.",
    "limit": f"limit must be a whole number of rows from 1 to {MAX_ROWS}.",
}


class BadWindowQuery(ValueError):
    """A query string ``/api/board`` cannot answer, as one sentence."""


def parse_query(params: Mapping[str, str]) -> WindowQuery:
    """The query of ``/api/board``'s parameters; :class:`BadWindowQuery` naming the first bad
    one. Unknown parameters are ignored (a ``token`` among them)."""
    given = {key: params[key] for key in ("state", "q", "offset", "limit") if params.get(key)}
    try:
        return WindowQuery.model_validate(given)
    except ValidationError as error:
        field = str(error.errors()[0]["loc"][0])
        raise BadWindowQuery(QUERY_PROBLEMS.get(field, str(error))) from None


def _newest_first(rows: list[Row]) -> list[Row]:
    rows = sorted(rows, key=lambda row: row["id"])
    return sorted(rows, key=lambda row: row["created_at"] or "", reverse=True)  # stable: ids stay


def page_order(rows: list[Row]) -> list[Row]:
    """``rows`` in the page's order (the module's docstring)."""
    running, waiting, rest = [], [], []
    for row in rows:
        state = row["state"]
        if state == TaskState.RUNNING.value:
            running.append(row)
        elif state in WAITING:
            waiting.append(row)
        else:
            rest.append(row)
    waiting.sort(key=lambda row: (-(row["priority"] or 0), row["created_at"] or "", row["id"]))
    return _newest_first(running) + waiting + _newest_first(rest)


def in_view(row: Row, state: str | None, needle: str) -> bool:
    """Whether ``row`` is in the view of ``state`` and the lower-cased search ``needle``."""
    if state is not None and row["state"] != state:
        return False
    return not needle or needle in row["id"].lower() or needle in (row["prompt"] or "").lower()


def first_start_ms(row: Row) -> int | None:
    """When the task's first attempt started, in whole milliseconds since 1970 (the page's
    ``Date.parse``); None when no attempt has started."""
    attempts = row.get("attempts") or []
    if not attempts or not attempts[0].get("started_at"):
        return None
    started = datetime.fromisoformat(attempts[0]["started_at"])
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return (started - EPOCH) // MILLISECOND


def timeline_lanes(rows: list[Row], lanes: int = TIMELINE_LANES) -> list[Row]:
    """The ``lanes`` rows whose first attempt started last, latest first (ties by id)."""
    started = [
        (start, row["id"], row) for row in rows if (start := first_start_ms(row)) is not None
    ]
    latest = heapq.nsmallest(lanes, started, key=lambda entry: (-entry[0], entry[1]))
    return [row for _start, _id, row in latest]


class View:
    """One view's rows in the page's order, and its timeline, at one version of the board."""

    def __init__(self, ordered: list[Row], state: str | None, needle: str) -> None:
        if state is None and not needle:
            self.rows = ordered
        else:
            self.rows = [row for row in ordered if in_view(row, state, needle)]
        self.lanes = timeline_lanes(self.rows)
