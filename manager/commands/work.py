"""Starting work: ``spawn``, ``run``, ``dispatch`` and the seed's ``spawn-worker``."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..config import positive_usd
from ..errors import (
    EXIT_TASKS_FAILED,
    BadInput,
)
from ..output import emit_json
from ..run.health import touch_alive
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

if TYPE_CHECKING:  # the run path loads only for the commands that start work (a faster CLI)
    from ..run.dispatch import Tick
    from ..run.spawn import SpawnContext


def _spawn(ctx: typer.Context, profile: str, task_id: str, as_json: bool, **extra: Any) -> None:
    from ..run.spawn import spawn_task

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


def tick_reporter(
    context: SpawnContext, as_json: bool, *, quiet_json: bool
) -> Callable[[Tick], None]:
    """What the dispatcher's every round prints: the states that changed, the recoveries."""
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

    return on_tick


PromptsArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="PROMPT",
        help="One task per prompt; with --plan, the request to plan (or a plan file).",
        show_default=False,
    ),
]
RunWorkersOpt = Annotated[
    int,
    typer.Option(
        "--max-workers", "--max-executors", "-n", metavar="N", min=1,
        envvar="ORCHESTRATOR_MAX_WORKERS",
        help="Most workers running at once (default $ORCHESTRATOR_MAX_WORKERS or 4); with "
        "--plan, also the most the planner may budget.",
    ),
]
PlanOpt = Annotated[
    bool,
    typer.Option(
        "--plan",
        help="Analyze -> plan -> execute -> aggregate: plan the request with 'orchestrator "
        "plan', create the plan's tasks, run them respecting dependencies, merge them into "
        "orchestrator/integration (in the volume's mirror) and report. A PROMPT that is a "
        ".json/.yaml file is run as a plan file.",
    ),
]
RunLocalOpt = Annotated[
    bool, typer.Option("--local", help="With --plan: plan on this host, not in a worker.")
]
OutputDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--output-dir", metavar="DIR",
        help="Write the merged tree to DIR (new or empty) as a git repository.",
    ),
]


@app.command("run")
@handled
def run(
    ctx: typer.Context,
    prompts: PromptsArg = None,
    max_workers: RunWorkersOpt = 4,
    plan: PlanOpt = False,
    local: RunLocalOpt = False,
    output_dir: OutputDirOpt = None,
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
    from ..git.greenfield import check_output_dir
    from ..run.pipeline import RunRequest, quiet, run_tasks

    if output_dir is not None:
        check_output_dir(output_dir)
    context = spawning(
        ctx, simulate=simulate, repo_url=repo, repo_branch=branch, mounts=mount, budget_usd=budget
    )
    chosen = context.profile(profile)
    context.backend.doctor.preflight(chosen)
    fields = task_fields(
        None, profile=profile, agent=agent or (chosen.agent.value if chosen.agent else None),
        timeout_s=timeout, max_attempts=retries + 1 if retries else None, model=model,
        max_budget_usd=max_budget, branch=branch,
        repo=repo,  # recorded, so a warm pool started with another --repo clones this one
    )
    set_fleet_budget(context.settings, as_json)
    request = RunRequest(prompts, max_workers, fields, plan, local, output_dir, profile)
    say, on_tick = quiet if as_json else typer.echo, tick_reporter(context, as_json, quiet_json=True)
    report = run_tasks(context, request, say=say, on_tick=on_tick)
    print_summary(report.rows, report.progress, as_json, extra=report.document)
    if not report.merged:
        raise typer.Exit(EXIT_TASKS_FAILED)  # a conflict: not everything reached the branch
    finish(report.progress)


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
    from ..run.dispatch import Dispatcher

    context = spawning(
        ctx, simulate=simulate, repo_url=repo, repo_branch=branch, mounts=mount, budget_usd=budget
    )
    set_fleet_budget(context.settings, as_json)
    dispatcher = Dispatcher(context, max_workers=max_workers, profile=profile, scope=ids or None)
    signal.signal(signal.SIGTERM, interrupt)
    on_tick = tick_reporter(context, as_json, quiet_json=False)
    tick = dispatcher.run(until_settled=until_done, on_tick=on_tick)
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
