"""Budgets: whether a task may spend more, decided and held in one step before a request goes.

A task's budget is ``Task.max_budget_usd`` (all attempts together); the fleet's is
``gateway/budget.json`` (:class:`FleetBudget`, counting from its ``since``), re-read only when
the file's mtime changes. A request is admitted by :meth:`Budgets.reserve` only if what it could
cost (:class:`~gateway.prices.Cost`) fits beside what was spent and what requests in flight hold
(:mod:`gateway.holds`); when it does not fit but enough remains for ``min_output_tokens``, its
``max_tokens`` is lowered to what remains instead. A request that settles above its hold (the
input estimate was short) and takes the task past its budget leaves an ``over_budget`` line, so
the attempt's result is ``failed`` with the budget error (``budget_error``).
"""

from __future__ import annotations

import contextlib
import math
import os

from orchestration_protocol import Layout, read_task, utc_now
from orchestration_protocol.errors import ProtocolError
from orchestration_protocol.gateway import (
    FleetBudget,
    LedgerEntry,
    append_line,
    budget_file,
    ledger_file,
    read_fleet_budget,
    task_budget_refusal,
)

from .holds import Hold, HoldBook, Spending
from .prices import Cost


class BudgetRefusal(Exception):
    """The request does not fit the task's or the fleet's budget (one sentence)."""


class Budgets:
    """Decides and holds under :meth:`HoldBook.locked`."""

    def __init__(self, layout: Layout, book: HoldBook) -> None:
        self.layout = layout
        self.book = book
        self._task_budgets: dict[str, float | None] = {}
        self._fleet: FleetBudget | None = None
        self._fleet_mtime: int | None = None

    def refusal(self, task_id: str) -> str | None:
        """Why the task may not spend at all now (spent and held reach a budget), or None."""
        with self.book.locked():
            return self._refusal(task_id, self._spending(task_id), 0.0)

    def reserve(self, task_id: str, attempt: int, cost: Cost) -> tuple[Hold | None, int | None]:
        """Hold what the request could cost; the hold and the ``max_tokens`` to send (lowered
        to fit the budget if need be). :class:`BudgetRefusal` when even that does not fit.
        No budget for the task and none for the fleet: nothing to hold (None)."""
        if self._task_budget(task_id) is None and self.fleet_budget() is None:
            return None, cost.max_tokens
        with self.book.locked():
            spending = self._spending(task_id)
            tokens = cost.max_tokens
            room = self._room(task_id, spending)
            if cost.usd(tokens) > room and tokens is not None and cost.per_output > 0:
                tokens = min(tokens, math.floor((room - cost.fixed) / cost.per_output))
                if tokens < cost.min_output_tokens:
                    tokens = cost.max_tokens
            refusal = self._refusal(task_id, spending, cost.usd(tokens))
            if refusal is not None:
                raise BudgetRefusal(refusal)
            return self.book.hold(task_id, attempt, cost.usd(tokens)), tokens

    def settle(self, hold: Hold | None, entry: LedgerEntry | None) -> None:
        """Record ``entry``, drop ``hold``; mark the task over budget if it now is."""
        if hold is None and entry is None:
            return
        self.book.settle(hold, entry)
        if entry is None or (budget := self._task_budget(entry.task_id)) is None:
            return
        with self.book.locked():
            spent = self.book.totals.task(entry.task_id)
            if spent > budget and self.book.totals.task(entry.task_id) - entry.cost_usd <= budget:
                line = LedgerEntry(at=utc_now(), task_id=entry.task_id, attempt=entry.attempt,
                                   outcome="over_budget", status_code=0,
                                   error=task_budget_refusal(spent, budget, entry.task_id))
                append_line(ledger_file(self.layout, entry.task_id), line)

    def _spending(self, task_id: str) -> Spending:
        fleet = self.fleet_budget()
        return self.book.spending(task_id, fleet.since if fleet is not None else None)

    def _room(self, task_id: str, spending: Spending) -> float:
        room = math.inf
        if (budget := self._task_budget(task_id)) is not None:
            room = budget - spending.task_spent - spending.task_held
        if (fleet := self.fleet_budget()) is not None:
            room = min(room, fleet.usd - spending.fleet_spent - spending.fleet_held)
        return room

    def _refusal(self, task_id: str, spending: Spending, need: float) -> str | None:
        budget = self._task_budget(task_id)
        used = spending.task_spent + spending.task_held
        if budget is not None and (used + need > budget or used >= budget):
            spent = f"task {task_id} has spent ${spending.task_spent:.4f} of its ${budget:.4f} budget"
            return _sentence(spent, spending.task_held, need)
        fleet = self.fleet_budget()
        used = spending.fleet_spent + spending.fleet_held
        if fleet is not None and (used + need > fleet.usd or used >= fleet.usd):
            since = fleet.since.isoformat(timespec="seconds")
            spent = f"the fleet has spent ${spending.fleet_spent:.4f} of its ${fleet.usd:.4f} budget"
            return _sentence(spent + f" since {since}", spending.fleet_held, need)
        return None

    def _task_budget(self, task_id: str) -> float | None:
        if task_id not in self._task_budgets:  # task files are written once
            try:
                self._task_budgets[task_id] = read_task(self.layout, task_id).max_budget_usd
            except ProtocolError:
                return None  # no readable task: no budget of its own (the lease check decides)
        return self._task_budgets[task_id]

    def fleet_budget(self) -> FleetBudget | None:
        """The fleet budget, re-read when its file changed."""
        mtime = None
        with contextlib.suppress(OSError):
            mtime = os.stat(budget_file(self.layout)).st_mtime_ns
        if mtime != self._fleet_mtime:
            self._fleet = read_fleet_budget(self.layout) if mtime is not None else None
            self._fleet_mtime = mtime
        return self._fleet


def _sentence(spent: str, held: float, need: float) -> str:
    """``task t has spent $a of its $b budget`` plus what is held and what was asked."""
    extra = []
    if held > 0:
        extra.append(f"${held:.4f} more is held by requests in flight")
    if need > 0:
        extra.append(f"this request could cost up to ${need:.4f}")
    return spent + (f" ({'; '.join(extra)})" if extra else "")
