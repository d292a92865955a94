"""The fleet's figures, read from a root: what the dashboard's ``/metrics`` exports (issue 17).

Tasks by state and profile, attempts started (claims) and ended (results, archived ones too),
each task's ledger summed by model (cost, tokens by kind, requests by outcome), egress verdicts,
and the warm pools. Read afresh on each call; the JSON-lines files (ledgers, egress logs) are
read again only when their size or mtime changed.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchestration_protocol import Layout, Result, TaskSnapshot, read_board, utc_now
from orchestration_protocol.files import read_model
from orchestration_protocol.gateway import (
    EgressEntry,
    LedgerEntry,
    egress_file,
    ledger_file,
    read_lines,
)
from orchestration_protocol.paths import is_valid_task_id
from orchestration_protocol.pool import pools_dir, read_pool_heartbeat, read_pool_workers

DEFAULT_PROFILE = "default"
TOKEN_KINDS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_input_tokens",
    "cache_write": "cache_creation_input_tokens",
}
"""Token kinds, by the ledger field that counts them."""
Signature = tuple[int, int]


@dataclass
class LedgerFigures:
    """One task's ledger summed by model: cost, tokens by kind, requests by outcome."""

    cost: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)

    @classmethod
    def of(cls, entries: Iterable[LedgerEntry]) -> LedgerFigures:
        figures = cls()
        for entry in entries:
            model = entry.model or "unknown"
            figures.cost[model] += entry.cost_usd
            figures.requests[(model, entry.outcome)] += 1
            for kind, name in TOKEN_KINDS.items():
                figures.tokens[(model, kind)] += getattr(entry, name)
        return figures


@dataclass
class EgressFigures:
    """Egress connections of one task (or all), by verdict."""

    allowed: int = 0
    refused: int = 0


@dataclass
class FleetFigures:
    """Everything the metrics show, for one root at one moment."""

    tasks: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Tasks by (state, profile)."""
    started: Counter[str] = field(default_factory=Counter)
    """Attempts claimed, by profile."""
    ended: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Attempts ended, by (result status, profile)."""
    ledgers: dict[str, LedgerFigures] = field(default_factory=dict)
    """Per task with a ledger, its figures."""
    egress: EgressFigures = field(default_factory=EgressFigures)
    """Every task's egress together."""
    pool_workers: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Warm pool workers by (pool, state)."""
    pool_sizes: dict[str, int] = field(default_factory=dict)
    """Per pool, the workers its manager keeps."""


def _signature(path: Path) -> Signature | None:
    try:
        info = os.stat(path, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return info.st_mtime_ns, info.st_size


def _ids(directory: Path, suffix: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    ids = (name[: -len(suffix)] for name in names if name.endswith(suffix))
    return sorted(task_id for task_id in ids if is_valid_task_id(task_id))


def _dirs(directory: Path) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _profile(snapshot: TaskSnapshot) -> str:
    return (snapshot.task.profile if snapshot.task else None) or DEFAULT_PROFILE


def attempt_endings(layout: Layout, snapshot: TaskSnapshot) -> list[str]:
    """How each ended attempt of a task ended: its archived results, then the current one."""
    endings = []
    archive = layout.artifacts_dir(snapshot.task_id) / "attempts"
    for attempt in _ids(archive, ".json"):
        try:
            endings.append(read_model(archive / f"{attempt}.json", Result).status.value)
        except (OSError, ValueError):
            continue
    if snapshot.result is not None:
        endings.append(snapshot.result.status.value)
    return endings


class FleetReader:
    """Reads a root's :class:`FleetFigures`; keeps the sums of unchanged JSON-lines files."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._known: dict[Path, tuple[Signature, object]] = {}
        self._lock = threading.Lock()

    def read(self) -> FleetFigures:
        figures = FleetFigures()
        self._tasks(figures)
        for task_id in _ids(self.layout.root / "ledger", ".jsonl"):
            ledger = self.ledger(task_id)
            if ledger is not None:
                figures.ledgers[task_id] = ledger
        for task_id in _ids(self.layout.root / "egress", ".jsonl"):
            egress = self.egress(task_id)
            if egress is not None:
                figures.egress.allowed += egress.allowed
                figures.egress.refused += egress.refused
        self._pools(figures)
        return figures

    def _tasks(self, figures: FleetFigures) -> None:
        board = read_board(self.layout)
        states = board.states(now=utc_now())
        for task_id, snapshot in board.snapshots.items():
            profile = _profile(snapshot)
            figures.tasks[(states[task_id].value, profile)] += 1
            figures.started[profile] += len(_ids(self.layout.claim_dir(task_id), ".json"))
            for ending in attempt_endings(self.layout, snapshot):
                figures.ended[(ending, profile)] += 1

    def _pools(self, figures: FleetFigures) -> None:
        for record in read_pool_workers(self.layout):
            figures.pool_workers[(record.pool, record.state.value)] += 1
        for pool in _dirs(pools_dir(self.layout)):
            heartbeat = read_pool_heartbeat(self.layout, pool)
            if heartbeat is not None:
                figures.pool_sizes[pool] = heartbeat.size

    def ledger(self, task_id: str) -> LedgerFigures | None:
        """A task's ledger figures; None when it has no ledger."""
        path = ledger_file(self.layout, task_id)
        found = self._cached(path, lambda: LedgerFigures.of(
            e for e in read_lines(path, LedgerEntry) if isinstance(e, LedgerEntry)))  # fmt: skip
        return found if isinstance(found, LedgerFigures) else None

    def egress(self, task_id: str) -> EgressFigures | None:
        """A task's egress figures; None when it has no egress log."""
        path = egress_file(self.layout, task_id)

        def count() -> EgressFigures:
            entries = [e for e in read_lines(path, EgressEntry) if isinstance(e, EgressEntry)]
            allowed = sum(1 for entry in entries if entry.allowed)
            return EgressFigures(allowed, len(entries) - allowed)

        found = self._cached(path, count)
        return found if isinstance(found, EgressFigures) else None

    def _cached(self, path: Path, read: Callable[[], object]) -> object | None:
        signature = _signature(path)
        if signature is None:
            with self._lock:
                self._known.pop(path, None)
            return None
        with self._lock:
            known = self._known.get(path)
        if known is None or known[0] != signature:
            known = (signature, read())
            with self._lock:
                self._known[path] = known
        return known[1]
