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
    EXIT_TASKS_FAILED,
    BadInput,
)
from ..greenfield import check_output_dir
from ..health import touch_alive
from ..ledger import ledger_cache
from ..output import emit_json
from ..pipeline import create_planned_tasks, repository_for
from ..spawn import SpawnContext, spawn_task
from ..views import status_rows
from .common import (
    AgentOpt,
    AttemptTimeoutOpt,
    BackendOpt,
    BranchOpt,
    BudgetOpt,
    Globals,
    IdsArg,
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
from .planning import aggregate_run, plan_for_run, planning_cost_line, run_document


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
    follow_hint = context.backend.names.follow_hint(worker.name, task_id)
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


PLAN_FILE_SUFFIXES = (".json", ".yaml", ".yml")


@app.command("run")
@handled
def run(
    ctx: typer.Context,
    prompts: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PROMPT",
            help="One task per prompt; with --plan, the request to plan (or a plan file).",
            show_default=False,
        ),
    ] = None,
    max_workers: Annotated[
        int,
        typer.Option(
            "--max-workers", "--max-executors", "-n", metavar="N", min=1,
            envvar="ORCHESTRATOR_MAX_WORKERS",
            help="Most workers running at once (default $ORCHESTRATOR_MAX_WORKERS or 4); with "
            "--plan, also the most the planner may budget.",
        ),
    ] = 4,
    plan: Annotated[
        bool,
        typer.Option(
            "--plan",
            help="Analyze -> plan -> execute -> aggregate: plan the request with 'orchestrator "
            "plan', create the plan's tasks, run them respecting dependencies, merge them into "
            "orchestrator/integration (in the volume's mirror) and report. A PROMPT that is a "
            ".json/.yaml file is run as a plan file.",
        ),
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="With --plan: plan on this host, not in a worker.")
    ] = False,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir", metavar="DIR",
            help="Write the merged tree to DIR (new or empty) as a git repository.",
        ),
    ] = None,
    simulate: SimulateOpt = False,
    profile: ProfileOpt = None,
    agent: AgentOpt = None,
    timeout: AttemptTimeoutOpt = None,
    retries: RetriesOpt = 0,
    model: ModelOpt = None,
    max_budget: MaxBudgetOpt = None,
    budget: BudgetOpt = None,
    repo: RepoOpt = None,
    branch: BranchOpt = None,
    mount: MountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create tasks, run them with up to N workers, wait, and summarize; with --plan, plan the
    request first and merge the results. With no repository it starts from an empty one in the
    volume."""
    if not prompts:
        raise BadInput("Give at least one PROMPT (with --plan: the request); see 'orchestrator run --help'.")
    positive_usd(max_budget, "--max-budget")
    if output_dir is not None:
        check_output_dir(output_dir)
    plan_file = (
        Path(prompts[0])
        if plan and len(prompts) == 1 and prompts[0].endswith(PLAN_FILE_SUFFIXES)
        and Path(prompts[0]).is_file()
        else None
    )
    context = spawning(
        ctx, simulate=simulate, repo_url=repo, repo_branch=branch, mounts=mount, budget_usd=budget
    )
    chosen = context.profile(profile)
    context.backend.doctor.preflight(chosen)
    fields = task_fields(
        None,
        profile=profile,
        agent=agent or (chosen.agent.value if chosen.agent else None),
        timeout_s=timeout,
        max_attempts=retries + 1 if retries else None,
        model=model,
        max_budget_usd=max_budget,
        repo=repo,  # recorded, so a warm pool started with another --repo clones this one
        branch=branch,
    )
    layout = context.settings.layout
    set_fleet_budget(context.settings, as_json)
    text = " ".join(prompts)
    outcome = None
    if plan and plan_file is None:
        repository, outcome = plan_for_run(
            context, text, max_workers, local=local, profile=profile, as_json=as_json
        )
        tasks = create_planned_tasks(layout, outcome.plan, repository, fields)
        max_workers = min(max_workers, outcome.plan.executor_budget)
    else:
        repository = repository_for(context, text)
        if repository.greenfield:
            fields["repo"] = repository.url
        if plan_file is not None:
            tasks = planning.create_plan(layout, plan_file, fields, rename=True)
        else:
            tasks = [planning.create_task(layout, {**fields, "prompt": p}) for p in prompts]
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
    merged = None
    if plan or repository.greenfield or output_dir is not None:
        merged = aggregate_run(context, repository, tasks, output_dir, as_json)
    if outcome is not None and not as_json:
        typer.echo(planning_cost_line(outcome))
    print_summary(rows, tick.progress, as_json, extra=run_document(outcome, merged))
    if merged is not None and not merged.merge.ok:
        raise typer.Exit(EXIT_TASKS_FAILED)  # a conflict: not everything reached the branch
    finish(tick.progress)


@app.command("dispatch")
@handled
def dispatch(
    ctx: typer.Context,
    ids: IdsArg = None,
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
    """Queue mode: keep up to N workers busy on tasks whose dependencies succeeded (only IDS,
    when given)."""
    context = spawning(
        ctx, simulate=simulate, repo_url=repo, repo_branch=branch, mounts=mount, budget_usd=budget
    )
    set_fleet_budget(context.settings, as_json)
    dispatcher = Dispatcher(context, max_workers=max_workers, profile=profile, scope=ids or None)
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
