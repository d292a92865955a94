"""The fleet's Prometheus metrics (issue 17), computed from the volume at each scrape.

``GET /metrics`` on the dashboard (behind its token, like every page but ``/healthz``: give
Prometheus ``authorization: {credentials: TOKEN}``). Nothing is counted in memory: every figure
is read from the root when Prometheus asks, so a restarted dashboard loses nothing and two
dashboards on one volume agree. Ledgers are read again only when their size or mtime changed.

- ``orchestrator_tasks{state,profile}``: tasks by state and profile (``default`` for none);
- ``orchestrator_attempts_started_total{profile}``: attempts claimed (``claims/<id>/<n>.json``);
- ``orchestrator_attempts_ended_total{ending,profile}``: attempts ended, by result status (the
  current result and the archived ones of earlier attempts);
- ``orchestrator_cost_usd_total{task,model}`` and ``orchestrator_tokens_total{task,model,kind}``
  (kind: input, output, cache_read, cache_write): from the gateway's ledger;
- ``orchestrator_model_requests_total{model,outcome}``: the ledger's requests;
- ``orchestrator_egress_connections_total{verdict}``: allowed and refused egress connections;
- ``orchestrator_pool_workers{pool,state}`` and ``orchestrator_pool_size{pool}``: warm pools,
  their workers by state and the size their manager keeps.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
    allowed: int = 0
    refused: int = 0


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


class FileFigures:
    """Per task, what its JSON-lines file sums to; a file is read again only when it changed."""

    def __init__(self) -> None:
        self._known: dict[Path, tuple[Signature, object]] = {}
        self._lock = threading.Lock()

    def ledger(self, layout: Layout, task_id: str) -> LedgerFigures | None:
        path = ledger_file(layout, task_id)
        found = self._cached(path, lambda: LedgerFigures.of(
            e for e in read_lines(path, LedgerEntry) if isinstance(e, LedgerEntry)))  # fmt: skip
        return found if isinstance(found, LedgerFigures) else None

    def egress(self, layout: Layout, task_id: str) -> EgressFigures | None:
        path = egress_file(layout, task_id)

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


def _profile(snapshot: TaskSnapshot) -> str:
    return (snapshot.task.profile if snapshot.task else None) or DEFAULT_PROFILE


def _endings(layout: Layout, snapshot: TaskSnapshot) -> list[str]:
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


def _claims(layout: Layout, task_id: str) -> int:
    return len(_ids(layout.claim_dir(task_id), ".json"))


class FleetCollector(Collector):
    """Every figure of one root, read when Prometheus scrapes."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.files = FileFigures()

    def collect(self) -> Iterator[Metric]:
        yield from self._tasks()
        yield from self._ledgers()
        yield from self._egress()
        yield from self._pools()

    def _tasks(self) -> Iterator[Metric]:
        board = read_board(self.layout)
        states = board.states(now=utc_now())
        tasks = GaugeMetricFamily("orchestrator_tasks", "Tasks by state and profile.",
                                  labels=["state", "profile"])  # fmt: skip
        started = CounterMetricFamily("orchestrator_attempts_started", "Attempts claimed.",
                                      labels=["profile"])  # fmt: skip
        ended = CounterMetricFamily("orchestrator_attempts_ended", "Attempts ended, by result.",
                                    labels=["ending", "profile"])  # fmt: skip
        by_state: Counter[tuple[str, str]] = Counter()
        claims: Counter[str] = Counter()
        endings: Counter[tuple[str, str]] = Counter()
        for task_id, snapshot in board.snapshots.items():
            profile = _profile(snapshot)
            by_state[(states[task_id].value, profile)] += 1
            claims[profile] += _claims(self.layout, task_id)
            endings.update((ending, profile) for ending in _endings(self.layout, snapshot))
        for (state, profile), count in sorted(by_state.items()):
            tasks.add_metric([state, profile], count)
        for profile, count in sorted(claims.items()):
            started.add_metric([profile], count)
        for (ending, profile), count in sorted(endings.items()):
            ended.add_metric([ending, profile], count)
        yield from (tasks, started, ended)

    def _ledgers(self) -> Iterator[Metric]:
        cost = CounterMetricFamily("orchestrator_cost_usd", "Model cost by task and model (USD).",
                                   labels=["task", "model"])  # fmt: skip
        tokens = CounterMetricFamily("orchestrator_tokens", "Tokens by task, model and kind.",
                                     labels=["task", "model", "kind"])  # fmt: skip
        requests: Counter[tuple[str, str]] = Counter()
        for task_id in _ids(self.layout.root / "ledger", ".jsonl"):
            figures = self.files.ledger(self.layout, task_id)
            if figures is None:
                continue
            for model, usd in sorted(figures.cost.items()):
                cost.add_metric([task_id, model], usd)
            for (model, kind), count in sorted(figures.tokens.items()):
                tokens.add_metric([task_id, model, kind], count)
            requests.update(figures.requests)
        made = CounterMetricFamily("orchestrator_model_requests", "Model requests the gateway "
                                   "handled, by model and outcome.", labels=["model", "outcome"])  # fmt: skip
        for (model, outcome), count in sorted(requests.items()):
            made.add_metric([model, outcome], count)
        yield from (cost, tokens, made)

    def _egress(self) -> Iterator[Metric]:
        allowed = refused = 0
        for task_id in _ids(self.layout.root / "egress", ".jsonl"):
            figures = self.files.egress(self.layout, task_id)
            if figures is not None:
                allowed, refused = allowed + figures.allowed, refused + figures.refused
        egress = CounterMetricFamily("orchestrator_egress_connections", "Outbound connections "
                                     "through the gateway's proxy, by verdict.", labels=["verdict"])  # fmt: skip
        egress.add_metric(["allowed"], allowed)
        egress.add_metric(["refused"], refused)
        yield egress

    def _pools(self) -> Iterator[Metric]:
        workers = GaugeMetricFamily("orchestrator_pool_workers", "Warm pool workers by state.",
                                    labels=["pool", "state"])  # fmt: skip
        sizes = GaugeMetricFamily("orchestrator_pool_size", "Workers each pool's manager keeps.",
                                  labels=["pool"])  # fmt: skip
        counted = Counter(
            (record.pool, record.state.value) for record in read_pool_workers(self.layout)
        )
        for (pool, state), count in sorted(counted.items()):
            workers.add_metric([pool, state], count)
        for pool in sorted(_dirs(pools_dir(self.layout))):
            heartbeat = read_pool_heartbeat(self.layout, pool)
            if heartbeat is not None:
                sizes.add_metric([pool], heartbeat.size)
        yield from (workers, sizes)


def _dirs(directory: Path) -> list[str]:
    try:
        return [entry.name for entry in os.scandir(directory) if entry.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def fleet_registry(layout: Layout) -> CollectorRegistry:
    """A registry holding the root's collector alone (no process metrics: they would be the
    dashboard's, not the fleet's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(layout))
    return registry
