"""The fleet's Prometheus metrics (issue 17), computed from the volume at each scrape.

``GET /metrics`` on the dashboard (behind its token, like every page but ``/healthz``: give
Prometheus ``authorization: {credentials: TOKEN}``). Nothing is counted in memory: every figure
is read from the root when Prometheus asks, so a restarted dashboard loses nothing and two
dashboards on one volume agree. Ledgers are read again only when their size or mtime changed.

The figures come from :mod:`orchestration_views.figures`.

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

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestration_protocol import Layout
from orchestration_views.figures import FleetFigures, FleetReader


class FleetCollector(Collector):
    """Every figure of one root, read when Prometheus scrapes."""

    def __init__(self, layout: Layout) -> None:
        self.reader = FleetReader(layout)

    def collect(self) -> Iterator[Metric]:
        figures = self.reader.read()
        yield from _tasks(figures)
        yield from _ledgers(figures)
        yield from _egress(figures)
        yield from _pools(figures)


def _family(kind: type[GaugeMetricFamily | CounterMetricFamily], name: str, doc: str,
            labels: list[str], values: Mapping[Any, float]) -> Metric:  # fmt: skip
    """A metric family with one sample per key of ``values`` (a tuple key: one label each)."""
    family: GaugeMetricFamily | CounterMetricFamily = kind(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def _tasks(figures: FleetFigures) -> Iterator[Metric]:
    yield _family(GaugeMetricFamily, "orchestrator_tasks", "Tasks by state and profile.",
                  ["state", "profile"], figures.tasks)  # fmt: skip
    yield _family(CounterMetricFamily, "orchestrator_attempts_started", "Attempts claimed.",
                  ["profile"], figures.started)  # fmt: skip
    yield _family(CounterMetricFamily, "orchestrator_attempts_ended",
                  "Attempts ended, by result.", ["ending", "profile"], figures.ended)  # fmt: skip


def _ledgers(figures: FleetFigures) -> Iterator[Metric]:
    cost = CounterMetricFamily("orchestrator_cost_usd", "Model cost by task and model (USD).",
                               labels=["task", "model"])  # fmt: skip
    tokens = CounterMetricFamily("orchestrator_tokens", "Tokens by task, model and kind.",
                                 labels=["task", "model", "kind"])  # fmt: skip
    made = CounterMetricFamily("orchestrator_model_requests", "Model requests the gateway "
                               "handled, by model and outcome.", labels=["model", "outcome"])  # fmt: skip
    requests: Counter[tuple[str, str]] = Counter()
    for task_id, ledger in sorted(figures.ledgers.items()):
        for model, usd in sorted(ledger.cost.items()):
            cost.add_metric([task_id, model], usd)
        for (model, kind), count in sorted(ledger.tokens.items()):
            tokens.add_metric([task_id, model, kind], count)
        requests.update(ledger.requests)
    for (model, outcome), count in sorted(requests.items()):
        made.add_metric([model, outcome], count)
    yield from (cost, tokens, made)


def _egress(figures: FleetFigures) -> Iterator[Metric]:
    egress = CounterMetricFamily("orchestrator_egress_connections", "Outbound connections "
                                 "through the gateway's proxy, by verdict.", labels=["verdict"])  # fmt: skip
    egress.add_metric(["allowed"], figures.egress.allowed)
    egress.add_metric(["refused"], figures.egress.refused)
    yield egress


def _pools(figures: FleetFigures) -> Iterator[Metric]:
    yield _family(GaugeMetricFamily, "orchestrator_pool_workers", "Warm pool workers by state.",
                  ["pool", "state"], figures.pool_workers)  # fmt: skip
    yield _family(GaugeMetricFamily, "orchestrator_pool_size",
                  "Workers each pool's manager keeps.", ["pool"], figures.pool_sizes)  # fmt: skip


def fleet_registry(layout: Layout) -> CollectorRegistry:
    """A registry holding the root's collector alone (no process metrics: they would be the
    dashboard's, not the fleet's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(layout))
    return registry
