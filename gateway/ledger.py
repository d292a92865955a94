"""The ledger: one line per model request in ``ledger/<task>.jsonl``, and running totals.

Totals live in memory so a request's budget check reads no file: a task's total is seeded from
its ledger file the first time the task is seen, the fleet's total (entries since the fleet
budget's ``since``) by one scan of the ledger directory whenever ``since`` changes. Every entry
this gateway appends is added to both.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

from orchestration_protocol import Layout
from orchestration_protocol.gateway import (
    LEDGER_DIR,
    LedgerEntry,
    append_line,
    ledger_cost,
    ledger_file,
    read_lines,
)


class Ledger:
    """Appends :class:`LedgerEntry` lines and keeps spending totals (thread-safe)."""

    def __init__(self, layout: Layout, node: str | None = None) -> None:
        self.layout = layout
        self.node = node
        """The node whose gateway this is, put into every line."""
        self._lock = threading.Lock()
        self._task_totals: dict[str, float] = {}
        self._fleet_since: datetime | None = None
        self._fleet_total = 0.0

    def record(self, entry: LedgerEntry) -> None:
        """Append ``entry`` to its task's ledger and add its cost to the totals."""
        self.task_spent(entry.task_id)  # seed from the file before this entry lands in it
        append_line(ledger_file(self.layout, entry.task_id), entry)
        with self._lock:
            self._task_totals[entry.task_id] += entry.cost_usd
            if self._fleet_since is not None and entry.at >= self._fleet_since:
                self._fleet_total += entry.cost_usd

    def task_spent(self, task_id: str) -> float:
        """What the task has cost so far, all attempts."""
        with self._lock:
            if task_id not in self._task_totals:
                self._task_totals[task_id] = ledger_cost(self.layout, task_id)
            return self._task_totals[task_id]

    def fleet_spent(self, since: datetime) -> float:
        """What all tasks together have cost since ``since``."""
        with self._lock:
            if self._fleet_since != since:
                self._fleet_total = self._scan_fleet(since)
                self._fleet_since = since
            return self._fleet_total

    def _scan_fleet(self, since: datetime) -> float:
        total = 0.0
        for path in sorted((self.layout.root / LEDGER_DIR).glob("*.jsonl")):
            total += sum(e.cost_usd for e in _entries(path) if e.at >= since)
        return total


def _entries(path: Path) -> list[LedgerEntry]:
    return [e for e in read_lines(path, LedgerEntry) if isinstance(e, LedgerEntry)]
