"""What runs per root, for ``orchestrator doctor``: the engine's things of every root on it
(``backend.doctor.running``), read beside each root's files where this process sees them: how
long its gateway has been idle and when it stops itself (``GATEWAY_IDLE_STOP_S``), which warm
pool workers wait idle, whether a dispatcher or a warm pool's manager runs for it."""

from __future__ import annotations

import contextlib
import fcntl
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from gateway.idle import IDLE_POLL_S, last_needed
from gateway.settings import GatewaySettings
from orchestration_protocol import Layout
from orchestration_protocol.docstrings import describe_fields
from orchestration_protocol.gateway import callers_dir
from orchestration_protocol.pool import (
    PoolWorkerState,
    pools_dir,
    read_pool_heartbeat,
    read_pool_worker,
)

from ..backends import Backend
from ..backends.running import EngineRoot, Kind, RunningThing, cleanup_hint

DISPATCHER_LOCK = ".dispatcher.lock"
"""The file a running ``orchestrator dispatch`` holds locked (``manager.run.dispatch``)."""
DEFAULT_IDLE_STOP_S = float(GatewaySettings.model_fields["idle_stop_s"].default)


WorkerState = Literal["running", "idle", "busy", "unknown"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True)


class GatewayView(_Model):
    """A root's running gateway, and when it stops itself."""

    name: str
    """Its container, service or process."""
    started_at: datetime | None
    """When it (last) started."""
    callers: int | None
    """Caller tokens on file (attempts that may talk to the model now); None: files unseen."""
    idle_since: datetime | None
    """Since when nothing has needed it (no caller token, no fresh worker or pool heartbeat);
    None while something does, or when the root's files are not seen here."""
    idle_stop_s: float
    """Its ``GATEWAY_IDLE_STOP_S``: idle this long, it stops (0: never)."""
    stops_at: datetime | None
    """When it stops itself if nothing needs it before (within the gateway's poll of
    ``IDLE_POLL_S`` seconds); None while needed, when it never stops, or unknown."""


class WorkerView(_Model):
    """A running worker."""

    name: str
    """Its container, service, job or thread."""
    task_id: str | None
    """The task it works on; None for an idle pool worker."""
    pool: str | None
    """Its warm pool (a pool worker)."""
    state: WorkerState
    """``running`` (a task's worker), ``idle`` (a pool worker waiting), ``busy`` (a pool
    worker on a task), or ``unknown`` (a pool worker whose record is not seen here)."""
    started_at: datetime | None
    """When it started."""
    age_s: float | None
    """Seconds since it started."""


class RootView(_Model):
    """Everything that runs for one root."""

    root: str
    """The root as the engine labels it (``volume:NAME``, ``bind:/path``, or a path)."""
    scope: str
    """Its short id in the engine's names."""
    current: bool
    """Whether it is this command's root."""
    files: str | None
    """Where this process reads its files; None when it cannot (the views below then show
    only what the engine says)."""
    gateway: GatewayView | None
    """Its gateway, if one runs."""
    scripted_model: str | None
    """Its scripted model, if one runs (simulation)."""
    workers: list[WorkerView]
    """Its running workers."""
    processes: list[str]
    """Manager processes seen through its files: ``orchestrator dispatch``, ``orchestrator pool``."""
    others: list[str]
    """Other containers with the root mounted (a Compose stack's services, run.sh's manager)."""
    stop_hint: str
    """The command that stops what runs for it."""


def running_roots(backend: Backend, root: Path, now: datetime | None = None) -> list[RootView]:
    """Every root the backend's engine runs something for, and this command's ``root`` when a
    dispatcher or a warm pool runs for it with nothing on the engine."""
    now = now or datetime.now(UTC)
    views = [root_view(found, now) for found in backend.doctor.running()]
    if not any(view.current for view in views):
        processes = manager_processes(Layout(root), now)
        if processes:
            hint = cleanup_hint(root, backend.name)
            views.append(RootView(
                root=str(root), scope="", current=True, files=str(root), gateway=None,
                scripted_model=None, workers=[], processes=processes, others=[], stop_hint=hint,
            ))
    return sorted(views, key=lambda view: (not view.current, view.root))


def root_view(found: EngineRoot, now: datetime) -> RootView:
    """One engine root read beside its files (when seen here)."""
    layout = Layout(found.files) if found.files is not None else None
    gateway = next((thing for thing in found.things if thing.kind is Kind.GATEWAY), None)
    model = next((thing for thing in found.things if thing.kind is Kind.SCRIPTED_MODEL), None)
    workers = [
        worker_view(thing, layout, now)
        for thing in found.things
        if thing.kind in (Kind.WORKER, Kind.POOL_WORKER)
    ]
    others = [f"{thing.name} ({thing.service})" for thing in found.things if thing.kind is Kind.OTHER]
    return RootView(
        root=found.root,
        scope=found.scope,
        current=found.current,
        files=str(found.files) if found.files is not None else None,
        gateway=gateway_view(gateway, layout, now) if gateway is not None else None,
        scripted_model=model.name if model is not None else None,
        workers=sorted(workers, key=lambda worker: worker.name),
        processes=manager_processes(layout, now) if layout is not None else [],
        others=sorted(others),
        stop_hint=found.stop_hint,
    )


def gateway_view(thing: RunningThing, layout: Layout | None, now: datetime) -> GatewayView:
    """A gateway with its callers and idle stop, as far as the root's files tell."""
    idle_s = DEFAULT_IDLE_STOP_S if thing.idle_stop_s is None else thing.idle_stop_s
    callers = idle_since = stops_at = None
    if layout is not None:
        callers = _count_entries(callers_dir(layout))
        needed = last_needed(layout, now.timestamp())
        moments = [when for when in (needed, _timestamp(thing.started_at)) if when is not None]
        last = max(moments, default=None)
        if last is not None and last < now.timestamp() and not callers:
            idle_since = datetime.fromtimestamp(last, UTC)
            if idle_s > 0:
                stops_at = idle_since + timedelta(seconds=idle_s)
    return GatewayView(
        name=thing.name, started_at=thing.started_at, callers=callers, idle_since=idle_since,
        idle_stop_s=idle_s, stops_at=stops_at,
    )


def worker_view(thing: RunningThing, layout: Layout | None, now: datetime) -> WorkerView:
    """A worker; a pool worker's task and state from its record in the root's files."""
    task_id = thing.task_id
    state: WorkerState = "running"
    if thing.pool is not None:
        record = read_pool_worker(layout, thing.pool, thing.name) if layout is not None else None
        task_id = record.task_id if record is not None else None
        if record is None:
            state = "unknown"
        else:
            state = "busy" if record.state == PoolWorkerState.BUSY else "idle"
    age = (now - thing.started_at).total_seconds() if thing.started_at is not None else None
    return WorkerView(
        name=thing.name, task_id=task_id, pool=thing.pool, state=state,
        started_at=thing.started_at, age_s=age,
    )


def manager_processes(layout: Layout, now: datetime) -> list[str]:
    """The manager processes a root's files show running: a dispatcher (it holds its lock) and
    each warm pool whose manager still beats."""
    found = ["orchestrator dispatch"] if dispatcher_runs(layout.root) else []
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(pools_dir(layout)), key=lambda entry: entry.name):
            beat = read_pool_heartbeat(layout, entry.name) if entry.is_dir() else None
            if beat is not None and not beat.is_stale(now):
                found.append(f"orchestrator pool {beat.pool} ({beat.size} {beat.profile} workers)")
    return found


def dispatcher_runs(root: Path) -> bool:
    """Whether a process holds the root's dispatcher lock (tried as a shared lock, which is
    let go at once, and never made: a root where no dispatcher ever ran has no lock file)."""
    try:
        descriptor = os.open(root / DISPATCHER_LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return False
    finally:
        os.close(descriptor)


def _count_entries(directory: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(directory) if not entry.name.startswith("."))
    except OSError:
        return 0


def _timestamp(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


def render(views: list[RootView], now: datetime | None = None) -> list[str]:
    """The text lines of the running section."""
    now = now or datetime.now(UTC)
    if not views:
        return ["running: nothing on this engine for any root"]
    lines = [f"running: {len(views)} root{'s' if len(views) != 1 else ''} with something running"]
    for view in views:
        lines += _render_root(view, now)
    return lines


def _render_root(view: RootView, now: datetime) -> list[str]:
    mark = " (this root)" if view.current else ""
    seen = "" if view.files is not None else " (its files are not visible here)"
    lines = [f"  {view.root}{mark}{seen}"]
    if view.gateway is not None:
        lines.append(f"    gateway {view.gateway.name}: {_gateway_text(view.gateway, now)}")
    if view.scripted_model is not None:
        lines.append(f"    scripted model {view.scripted_model}")
    for worker in view.workers:
        pool = f"pool {worker.pool}, " if worker.pool else ""
        doing = worker.task_id or ("state unknown" if worker.state == "unknown" else "idle")
        state = "" if worker.state in ("idle", "unknown") else f"{worker.state}, "
        lines.append(f"    worker {worker.name}: {pool}{state}{doing}, age {_duration(worker.age_s)}")
    lines += [f"    process {process}" for process in view.processes]
    lines += [f"    container {other}" for other in view.others]
    if view.processes:
        lines.append("    (end the processes first, or they start their workers again)")
    lines.append(f"    stop: {view.stop_hint}")
    return lines


def _gateway_text(gateway: GatewayView, now: datetime) -> str:
    up = (now - gateway.started_at).total_seconds() if gateway.started_at else None
    text = f"up {_duration(up)}"
    if gateway.callers:
        return f"{text}, {gateway.callers} callers on file (not idle)"
    if gateway.idle_since is None:
        needed = "" if gateway.callers is None else ", workers beat (not idle)"
        return text + (needed or ", idle time unknown")
    idle = f"{text}, idle {_duration((now - gateway.idle_since).total_seconds())}"
    if gateway.stops_at is None:
        return f"{idle}, never stops by itself (GATEWAY_IDLE_STOP_S=0)"
    left = max(0.0, (gateway.stops_at - now).total_seconds())
    return (f"{idle}, stops itself in about {_duration(left)} (GATEWAY_IDLE_STOP_S="
            f"{gateway.idle_stop_s:g}; it looks every {IDLE_POLL_S:g} s)")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
