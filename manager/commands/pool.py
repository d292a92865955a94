"""``orchestrator pool``: keep N idle hardened workers that claim tasks as their files appear."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import BadInput
from ..output import emit_json_line
from .common import (
    BranchOpt,
    JsonOpt,
    MountOpt,
    ProfileOpt,
    RepoOpt,
    SimulateOpt,
    app,
    backend_for,
    handled,
    settings_of,
)

if TYPE_CHECKING:  # the pool's machinery loads only when a pool runs (a faster CLI)
    from ..run.pool import PoolTick

SizeOpt = Annotated[
    int, typer.Option("-n", "--size", metavar="N", min=1, help="How many idle workers to keep.")
]
PoolNameOpt = Annotated[
    str | None,
    typer.Option("--name", metavar="NAME", help="The pool's name (default PROFILE-<random>)."),
]


@app.command("pool")
@handled
def pool(
    ctx: typer.Context,
    size: SizeOpt = 4,
    profile: ProfileOpt = None,
    name: PoolNameOpt = None,
    simulate: SimulateOpt = False,
    repo: RepoOpt = None,
    branch: BranchOpt = None,
    mount: MountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Warm pool: keep N idle workers of a profile that claim a task the moment its file
    appears, each replaced as it finishes or dies; runs until SIGTERM or Ctrl-C, then stops
    every worker and removes its container."""
    from ..run.pool import WarmPool
    from ..run.spawn import prepare_spawning

    settings = settings_of(ctx, simulate=simulate, repo_url=repo, repo_branch=branch, mounts=mount)
    backend = backend_for(ctx, settings)
    if not backend.workers.keeps_warm_pools:
        raise BadInput(
            f"The {backend.name} backend starts every worker cold; run the warm pool with "
            "--backend docker (or local)."
        )
    context = prepare_spawning(settings, backend)
    warm = WarmPool(context, size=size, profile=profile, name=name)
    stop = _stop_on_signals()
    if not as_json:
        typer.echo(
            f"pool {warm.name}: keeping {size} idle {warm.profile.name} workers; stop with "
            "Ctrl-C or SIGTERM"
        )
    warm.run(stop, _tick_reporter(warm.name, as_json))
    _report(as_json, {"event": "stopped", "pool": warm.name})


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _tick_reporter(pool_name: str, as_json: bool) -> Callable[[PoolTick], None]:
    """Reports each round whose counts changed, and every recovery."""
    last: dict[str, int] = {}

    def on_tick(tick: PoolTick) -> None:
        counts = {"idle": tick.idle, "busy": tick.busy, "started": len(tick.started)}
        for recovery in tick.recovered:
            _report(as_json, {"event": "recovered", "id": recovery.task_id, "error": recovery.error})
        if counts != last or tick.started:
            last.update(counts)
            _report(as_json, {"event": "tick", "pool": pool_name, **counts})

    return on_tick


def _report(as_json: bool, event: dict[str, object]) -> None:
    if as_json:
        emit_json_line(event)
        return
    kind = event.pop("event")
    if kind == "tick":
        typer.echo(
            f"{time.strftime('%H:%M:%S')} pool {event['pool']}: {event['idle']} idle, "
            f"{event['busy']} busy" + (f", started {event['started']}" if event["started"] else "")
        )
    elif kind == "recovered":
        typer.echo(f"{time.strftime('%H:%M:%S')} recovered {event['id']}: {event['error']}")
    else:
        typer.echo(f"pool {event['pool']} stopped; its workers are gone")
