"""Starting work: ``spawn``, ``run``, ``dispatch`` and the seed's ``spawn-worker``."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestration_protocol import utc_now

from .. import plan as planning
from ..config import positive_usd
from ..dispatch import Dispatcher, Tick
from ..errors import (
    BadInput,
)
from ..health import touch_alive
from ..ledger import ledger_cache
from ..output import emit_json
from ..spawn import SpawnContext, spawn_task
from ..views import status_rows
from .common import (
    AgentOpt,
    AttemptTimeoutOpt,
    BackendOpt,
    BranchOpt,
    BudgetOpt,
    Globals,
    JsonOpt,
    MaxBudgetOpt,
    MaxWorkersOpt,
    ModelOpt,
    MountOpt,
    NetworkOpt,
    ProfileOpt,
    ProfilesOpt,
    RepoOpt,
    RetriesOpt,
    RootOpt,
    SimulateOpt,
    VolumeOpt,
    app,
    finish,
    handled,
    interrupt,
    print_summary,
    set_fleet_budget,
    spawning,
    state_printer,
    task_fields,
)


def _spawn(ctx: typer.Context, profile: str, task_id: str, as_json: bool, **extra: Any) -> None:
    context = spawning(ctx, **extra)
    worker = spawn_task(context, task_id, profile)
    if as_json:
        emit_json(
            {
                "id": task_id,
                "worker": worker.name,
                "attempt": worker.attempt,
                "profile": worker.profile,
                "backend": context.backend.name,
            }
        )
        return
    follow_hint = context.backend.follow_hint(worker.name, task_id)
    typer.echo(
        f"started {worker.name} (profile {profile}, attempt {worker.attempt}); "
        f"follow it with: {follow_hint}"
    )


SpawnProfileArg = Annotated[
    str, typer.Argument(metavar="PROFILE", help="Worker profile, e.g. default or flutter.")
]
SpawnTaskArg = Annotated[
    str, typer.Argument(metavar="TASK_ID", help="The task to run (tasks/<id>.json).")
]


@app.command("spawn")
@handled
def spawn(
    ctx: typer.Context,
    profile: SpawnProfileArg,
    task_id: SpawnTaskArg,
    simulate: SimulateOpt = False,
    repo: RepoOpt = None,
    branch: BranchOpt = None,
    mount: MountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start one worker for one task (detached; see 'wait', 'logs', 'result')."""
    _spawn(
        ctx,
        profile,
        task_id,
        as_json,
        simulate=simulate,
        repo_url=repo,
        repo_branch=branch,
        mounts=mount,
    )


def _dispatch(
    context: SpawnContext,
    dispatcher: Dispatcher,
    *,
    until_settled: bool,
    as_json: bool,
    quiet_json: bool,
) -> Tick:
    report = state_printer(as_json)

    def on_tick(tick: Tick) -> None:
        touch_alive(context.settings.alive_file)
        if not (as_json and quiet_json):
            report({task_id: state.value for task_id, state in tick.progress.states.items()})
        for recovery in tick.recovered:
            if not as_json:
                typer.echo(
                    f"recovered {recovery.task_id} attempt {recovery.attempt}: {recovery.error}"
                )

    return dispatcher.run(until_settled=until_settled, on_tick=on_tick)


@app.command("run")
@handled
def run(
    ctx: typer.Context,
    prompts: Annotated[
        list[str] | None,
        typer.Argument(metavar="PROMPT", help="One task per prompt.", show_default=False),
    ] = None,
    max_workers: MaxWorkersOpt = 4,
    simulate: SimulateOpt = False,
    profile: ProfileOpt = None,
    agent: AgentOpt = None,
    timeout: AttemptTimeoutOpt = None,
    retries: RetriesOpt = 0,
    model: ModelOpt = None,
    max_budget: MaxBudgetOpt = None,
    budget: BudgetOpt = None,
    plan: Annotated[
        Path | None,
        typer.Option("--plan", metavar="FILE", help="Tasks from a JSON/YAML plan file."),
    ] = None,
    repo: RepoOpt = None,
    branch: BranchOpt = None,
    mount: MountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create tasks, run them with up to N workers, wait, and summarize."""
    if not prompts and plan is None:
        raise BadInput("Give at least one PROMPT, or --plan FILE; see 'orchestrator run --help'.")
    positive_usd(max_budget, "--max-budget")
    context = spawning(
        ctx, simulate=simulate, repo_url=repo, repo_branch=branch, mounts=mount, budget_usd=budget
    )
    chosen = context.profile(profile)
    context.backend.preflight(chosen)
    fields = task_fields(
        None,
        profile=profile,
        agent=agent or (chosen.agent.value if chosen.agent else None),
        timeout_s=timeout,
        max_attempts=retries + 1 if retries else None,
        model=model,
        max_budget_usd=max_budget,
    )
    layout = context.settings.layout
    set_fleet_budget(context.settings, as_json)
    if plan is not None:
        tasks = planning.create_plan(layout, plan, fields)
    else:
        tasks = [planning.create_task(layout, {**fields, "prompt": text}) for text in prompts or []]
    if not as_json:
        typer.echo(
            f"created {', '.join(task.id for task in tasks)}; running up to {max_workers} at once"
        )
    dispatcher = Dispatcher(
        context, max_workers=max_workers, scope=[task.id for task in tasks], profile=profile
    )
    tick = _dispatch(context, dispatcher, until_settled=True, as_json=as_json, quiet_json=True)
    dispatcher.wait_for_workers()
    ids = [task.id for task in tasks]
    rows = status_rows(tick.board, tick.states, utc_now(), ids, ledger_cache(layout))
    print_summary(rows, tick.progress, as_json)
    finish(tick.progress)


@app.command("dispatch")
@handled
def dispatch(
    ctx: typer.Context,
    max_workers: MaxWorkersOpt = 4,
    until_done: Annotated[
        bool,
        typer.Option(
            "--until-done", help="Exit once every task is settled (default: serve until stopped)."
        ),
    ] = False,
    simulate: SimulateOpt = False,
    profile: ProfileOpt = None,
    budget: BudgetOpt = None,
    repo: RepoOpt = None,
    branch: BranchOpt = None,
    mount: MountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue mode: keep up to N workers busy on tasks whose dependencies succeeded."""
    context = spawning(
        ctx, simulate=simulate, repo_url=repo, repo_branch=branch, mounts=mount, budget_usd=budget
    )
    set_fleet_budget(context.settings, as_json)
    dispatcher = Dispatcher(context, max_workers=max_workers, profile=profile)
    signal.signal(signal.SIGTERM, interrupt)
    tick = _dispatch(
        context, dispatcher, until_settled=until_done, as_json=as_json, quiet_json=False
    )
    if until_done:
        finish(tick.progress)


spawn_worker_app = typer.Typer(
    add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)


@spawn_worker_app.command()
@handled
def spawn_worker(
    ctx: typer.Context,
    profile: SpawnProfileArg,
    task_id: SpawnTaskArg,
    root: RootOpt = None,
    backend: BackendOpt = None,
    volume: VolumeOpt = None,
    network: NetworkOpt = None,
    profiles: ProfilesOpt = None,
    simulate: SimulateOpt = False,
    repo: RepoOpt = None,
    branch: BranchOpt = None,
    mount: MountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a worker container for a task: spawn-worker PROFILE TASK_ID."""
    os.umask(0)
    ctx.obj = Globals(root, backend, volume, network, profiles)
    _spawn(
        ctx,
        profile,
        task_id,
        as_json,
        simulate=simulate,
        repo_url=repo,
        repo_branch=branch,
        mounts=mount,
    )
