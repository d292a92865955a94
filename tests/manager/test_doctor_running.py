"""What ``orchestrator doctor`` says runs (``manager.views.running``): on every engine, this
root's worker and dispatcher while they run; from a root's real files, when an idle gateway
stops itself (``GATEWAY_IDLE_STOP_S``), which pool workers wait idle, which pools beat."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from manager.backends.running import Kind, RunningThing
from manager.cli import main
from manager.views.running import gateway_view, manager_processes, running_roots, worker_view
from orchestration_protocol import Layout
from orchestration_protocol.gateway import callers_dir
from orchestration_protocol.pool import (
    PoolHeartbeat,
    PoolWorker,
    PoolWorkerState,
    write_pool_heartbeat,
    write_pool_worker,
)
from tests import engines
from tests.engines import EngineKit
from tests.manager.test_manager_docker import wait_until

NOW = datetime.now(UTC)


def gateway(started_s_ago: float, idle_stop_s: float | None = None) -> RunningThing:
    started = NOW - timedelta(seconds=started_s_ago)
    return RunningThing(kind=Kind.GATEWAY, name="gw", started_at=started, idle_stop_s=idle_stop_s)


def beat(layout: Layout, task_id: str, seconds_ago: float) -> None:
    path = layout.status_dir / f"{task_id}.json"
    path.write_text("{}")
    when = NOW.timestamp() - seconds_ago
    os.utime(path, (when, when))


def test_an_idle_gateway_stops_idle_stop_s_after_the_last_heartbeat_went_stale(
    layout: Layout,
) -> None:
    beat(layout, "t1", seconds_ago=500)  # stale since 380 s ago (heartbeats count for 120 s)
    view = gateway_view(gateway(started_s_ago=1000, idle_stop_s=600), layout, NOW)
    assert view.callers == 0 and view.idle_stop_s == 600
    assert view.idle_since is not None and view.stops_at is not None
    assert abs((NOW - view.idle_since).total_seconds() - 380) < 1
    assert abs((view.stops_at - NOW).total_seconds() - 220) < 1


def test_a_gateway_started_after_the_last_need_counts_idle_from_its_start(layout: Layout) -> None:
    beat(layout, "t1", seconds_ago=5000)
    view = gateway_view(gateway(started_s_ago=100), layout, NOW)  # the default: 300 s
    assert view.idle_stop_s == 300 and view.stops_at is not None
    assert abs((view.stops_at - NOW).total_seconds() - 200) < 1


def test_a_caller_or_a_fresh_heartbeat_keeps_it_needed_and_zero_never_stops(
    layout: Layout,
) -> None:
    beat(layout, "t1", seconds_ago=10)
    assert gateway_view(gateway(1000), layout, NOW).stops_at is None
    beat(layout, "t1", seconds_ago=5000)
    callers_dir(layout).mkdir(parents=True, exist_ok=True)
    (callers_dir(layout) / "digest.json").write_text("{}")
    held = gateway_view(gateway(1000), layout, NOW)
    assert held.callers == 1 and held.idle_since is None and held.stops_at is None
    (callers_dir(layout) / "digest.json").unlink()
    never = gateway_view(gateway(1000, idle_stop_s=0), layout, datetime.now(UTC))
    assert never.idle_since is not None and never.stops_at is None
    assert gateway_view(gateway(1000), None, NOW).idle_since is None  # files unseen: unknown


def test_pool_workers_are_idle_or_busy_by_their_records_and_beating_pools_are_listed(
    layout: Layout,
) -> None:
    now = datetime.now(UTC)
    for name, state, task in (("pool-p-1", PoolWorkerState.IDLE, None),
                              ("pool-p-2", PoolWorkerState.BUSY, "t1")):  # fmt: skip
        write_pool_worker(layout, PoolWorker(
            name=name, pool="p", profile="default", state=state, since=now, task_id=task,
            attempt=1 if task else None,
        ))
    things = [RunningThing(kind=Kind.POOL_WORKER, name=name, pool="p", started_at=now)
              for name in ("pool-p-1", "pool-p-2")]  # fmt: skip
    views = [worker_view(thing, layout, now) for thing in things]
    assert [(view.state, view.task_id) for view in views] == [("idle", None), ("busy", "t1")]
    assert worker_view(things[0], None, now).state == "unknown"  # its record is not seen here
    assert manager_processes(layout, now) == []
    write_pool_heartbeat(layout, PoolHeartbeat(pool="p", profile="default", size=2, heartbeat_at=now,
                                                  stale_after_s=30))
    assert manager_processes(layout, now) == ["orchestrator pool p (2 default workers)"]


def test_doctor_lists_this_roots_worker_and_dispatcher_while_they_run(
    each_engine: EngineKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = each_engine
    monkeypatch.setitem(engines.SLOW_S, kit.name, 120.0)  # still running when looked at
    kit.task("nap", slow=True)
    run = kit.dispatch(1, until_settled=False)
    backend = kit.backend()
    try:
        def listed() -> bool:
            views = [view for view in running_roots(backend, kit.layout.root) if view.current]
            return bool(views and views[0].workers)

        wait_until(listed, timeout=120, what="the worker of nap listed")
        current = next(view for view in running_roots(backend, kit.layout.root) if view.current)
        assert [(w.task_id, w.state) for w in current.workers] == [("nap", "running")]
        assert current.processes == ["orchestrator dispatch"]
        assert (current.gateway is None) == (kit.name == "stub")  # a stub worker calls no model
        assert "cleanup --all --gateway --simulation" in current.stop_hint
    finally:
        run.stop()
    assert "orchestrator dispatch" not in next(
        view for view in running_roots(backend, kit.layout.root) if view.current
    ).processes


def test_doctor_says_nothing_runs_on_an_idle_stub_engine(layout: Layout, capsys) -> None:
    code = main(["--root", str(layout.root), "--backend", "stub", "doctor", "--simulate", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["running"] == []
    main(["--root", str(layout.root), "--backend", "stub", "doctor", "--simulate"])
    assert "running: nothing on this engine for any root" in capsys.readouterr().out
