"""What tasks cost by the gateway's ledger, and what is left of the fleet budget.

The gateway appends one :class:`~orchestration_protocol.gateway.LedgerEntry` per model request to
``ledger/<id>.jsonl``. The views read those files through a :class:`LedgerCache`, which reads a
ledger again only when its size or modification time changed, so ``watch`` and ``status`` over a
thousand tasks cost one ``stat`` per task once nothing is running. A task whose ledger has no
entry (no gateway in between, or a result from before it) falls back to the cost its result
reports.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestration_protocol import Layout, TaskSnapshot, is_valid_task_id
from orchestration_protocol.gateway import (
    LEDGER_DIR,
    FleetBudget,
    LedgerEntry,
    ledger_file,
    read_fleet_budget,
    read_lines,
)

LEDGER_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class LedgerSummary:
    """One task's ledger, summed up: what the views need, small enough to keep per task."""

    cost_usd: float = 0.0
    """What every attempt together cost."""
    by_attempt: dict[int, float] = field(default_factory=dict)
    """Cost per attempt."""
    requests: int = 0
    """How many requests the gateway handled for the task."""
    budget_errors: dict[int, str] = field(default_factory=dict)
    """Per attempt, the gateway's first refusal for a budget (as ``budget_error`` finds it)."""
    spending: tuple[tuple[datetime, float], ...] = ()
    """When each request that cost something ended, and its cost (for the fleet budget)."""

    def spent_since(self, since: datetime) -> float:
        since = _aware(since)
        return sum(cost for at, cost in self.spending if at >= since)


def summarize(entries: list[LedgerEntry]) -> LedgerSummary:
    """The summary of a task's ledger entries (the same figures as ``ledger_cost`` and
    ``budget_error`` of the gateway contract)."""
    by_attempt: dict[int, float] = {}
    budget_errors: dict[int, str] = {}
    for entry in entries:
        by_attempt[entry.attempt] = by_attempt.get(entry.attempt, 0.0) + entry.cost_usd
        if entry.outcome in ("refused", "over_budget") and entry.error and "budget" in entry.error:
            budget_errors.setdefault(entry.attempt, entry.error)
    return LedgerSummary(
        cost_usd=sum(entry.cost_usd for entry in entries),
        by_attempt=by_attempt,
        requests=len(entries),
        budget_errors=budget_errors,
        spending=tuple((_aware(entry.at), entry.cost_usd) for entry in entries if entry.cost_usd),
    )


def _aware(moment: datetime) -> datetime:
    """A time without a zone is taken as UTC (the contract does not insist on one)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return info.st_mtime_ns, info.st_size


class LedgerCache:
    """Per task, its ledger summary; a ledger is read again only when its file changed."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._known: dict[str, tuple[tuple[int, int], LedgerSummary]] = {}
        self._lock = threading.Lock()
        self._listing: tuple[tuple[int, int], frozenset[str]] | None = None
        self._listed_at = 0.0

    def _listed(self) -> frozenset[str]:
        """The ledger directory's file names: one listing per change of the directory (files are
        added and removed there, and appended to), not one ``stat`` per task."""
        directory = self.layout.root / LEDGER_DIR
        signature = _signature(directory)
        if signature is None:
            return frozenset()
        now = time.monotonic()
        if self._listing is None or self._listing[0] != signature or now - self._listed_at > 1:
            self._listing = (signature, frozenset(os.listdir(directory)))  # (coarse mtimes:
            self._listed_at = now  # listed again every second whatever the signature says)
        return self._listing[1]

    def summary(self, task_id: str) -> LedgerSummary | None:
        """The task's ledger, or None when it has no entry."""
        return self.summaries([task_id]).get(task_id)

    def summaries(self, task_ids: Iterable[str]) -> dict[str, LedgerSummary]:
        """The ledgers of those of ``task_ids`` that have an entry: the directory is looked at
        once, and only the tasks it lists are looked at again."""
        listed = self._listed()
        found: dict[str, LedgerSummary] = {}
        for task_id in task_ids:
            if f"{task_id}{LEDGER_SUFFIX}" not in listed:
                with self._lock:
                    self._known.pop(task_id, None)
                continue
            summary = self._read(task_id)
            if summary is not None:
                found[task_id] = summary
        return found

    def _read(self, task_id: str) -> LedgerSummary | None:
        path = ledger_file(self.layout, task_id)
        signature = _signature(path)
        if signature is None or signature[1] == 0:
            with self._lock:
                self._known.pop(task_id, None)
            return None
        with self._lock:
            known = self._known.get(task_id)
        if known is None or known[0] != signature:
            entries = [e for e in read_lines(path, LedgerEntry) if isinstance(e, LedgerEntry)]
            known = (signature, summarize(entries))
            with self._lock:
                self._known[task_id] = known
        return known[1] if known[1].requests else None

    def ledger_ids(self) -> list[str]:
        """Every task that has a ledger file, on the volume or not any more."""
        try:
            names = os.listdir(self.layout.root / LEDGER_DIR)
        except (FileNotFoundError, NotADirectoryError):
            return []
        ids = [name[: -len(LEDGER_SUFFIX)] for name in names if name.endswith(LEDGER_SUFFIX)]
        return sorted(task_id for task_id in ids if is_valid_task_id(task_id))

    def spent_since(self, since: datetime) -> float:
        """What every task's requests cost since ``since`` (the fleet budget's count)."""
        total = 0.0
        for task_id in self.ledger_ids():
            summary = self.summary(task_id)
            if summary is not None:
                total += summary.spent_since(since)
        return total


_CACHES: dict[Path, LedgerCache] = {}
_CACHES_LOCK = threading.Lock()


def ledger_cache(layout: Layout) -> LedgerCache:
    """The process's cache for this root (so ``watch`` keeps it between redraws)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(layout.root)
        if cache is None:
            cache = _CACHES[layout.root] = LedgerCache(layout)
        return cache


@dataclass(frozen=True)
class TaskCost:
    """What a task cost, and where the figure comes from."""

    cost_usd: float | None
    """Every attempt by the ledger; else the current result's own figure; None if neither."""
    source: str | None
    """``ledger``, ``result`` or None."""
    budget_error: str | None
    """The gateway's budget refusal of the current attempt, if any."""


def task_cost(snapshot: TaskSnapshot, ledger: LedgerSummary | None) -> TaskCost:
    """The task's cost from its ledger, falling back to its result's ``cost_usd``."""
    result = snapshot.current_result
    attempt = result.attempt if result is not None else snapshot.attempt
    budget_error = ledger.budget_errors.get(attempt) if ledger is not None else None
    if ledger is not None:
        return TaskCost(ledger.cost_usd, "ledger", budget_error)
    if result is not None and result.cost_usd is not None:
        return TaskCost(result.cost_usd, "result", None)
    return TaskCost(None, None, None)


def total_cost(costs: list[float | None]) -> float:
    return sum(cost for cost in costs if cost is not None)


def fleet_budget_view(layout: Layout, cache: LedgerCache | None = None) -> dict[str, object] | None:
    """The fleet budget with what was spent of it since it was set, JSON-ready; None if unset."""
    budget: FleetBudget | None = read_fleet_budget(layout)
    if budget is None:
        return None
    spent = (cache or ledger_cache(layout)).spent_since(budget.since)
    return {
        "usd": budget.usd,
        "since": budget.since.isoformat(),
        "spent_usd": spent,
        "left_usd": max(0.0, budget.usd - spent),
    }
