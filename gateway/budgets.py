"""Budgets: whether a task may spend more, decided before a request is forwarded.

A task's budget is ``Task.max_budget_usd`` (all attempts together); the fleet's is
``gateway/budget.json`` (:class:`FleetBudget`, counting from its ``since``), re-read only when
the file's mtime changes. Spending comes from the :class:`~gateway.ledger.Ledger`'s totals.
"""

from __future__ import annotations

import contextlib
import os

from orchestration_protocol import Layout, read_task
from orchestration_protocol.errors import ProtocolError
from orchestration_protocol.gateway import (
    FleetBudget,
    budget_file,
    read_fleet_budget,
    task_budget_refusal,
)

from .ledger import Ledger


class Budgets:
    """Answers "may this task spend more?" from in-memory totals."""

    def __init__(self, layout: Layout, ledger: Ledger) -> None:
        self.layout = layout
        self.ledger = ledger
        self._task_budgets: dict[str, float | None] = {}
        self._fleet: FleetBudget | None = None
        self._fleet_mtime: int | None = None

    def refusal(self, task_id: str) -> str | None:
        """Why the task's next request is refused for a budget (one sentence), or None."""
        spent = self.ledger.task_spent(task_id)
        refusal = task_budget_refusal(spent, self._task_budget(task_id), task_id)
        if refusal is not None:
            return refusal
        fleet = self.fleet_budget()
        if fleet is None:
            return None
        fleet_spent = self.ledger.fleet_spent(fleet.since)
        if fleet_spent >= fleet.usd:
            return (
                f"the fleet has spent ${fleet_spent:.4f} of its ${fleet.usd:.4f} budget "
                f"since {fleet.since.isoformat(timespec='seconds')}"
            )
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
