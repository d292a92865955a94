"""``orchestrator plan``, and the planning steps of ``orchestrator run --plan``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from orchestration_protocol import Task

from ..output import emit_json
from ..planning.planner import PlanOutcome, describe_plan, plan_document, save_plan
from ..run.pipeline import Aggregate, Repository, aggregate, make_plan, repository_for
from ..run.spawn import SpawnContext
from .common import (
    BranchOpt,
    JsonOpt,
    ProfileOpt,
    RepoOpt,
    SimulateOpt,
    app,
    handled,
    spawning,
)

ExecutorsOpt = Annotated[
    int,
    typer.Option(
        "--max-executors", "--max-workers", "-n", metavar="N", min=1, max=64,
        envvar="ORCHESTRATOR_MAX_WORKERS",
        help="Most workers to run at once; the plan's executor budget stays within it "
        "(default $ORCHESTRATOR_MAX_WORKERS or 4).",
    ),
]
LocalOpt = Annotated[
    bool,
    typer.Option("--local", help="Plan with Claude Code on this host (in a throwaway clone) "
                 "instead of in a worker container."),
]
RequestArg = Annotated[
    list[str], typer.Argument(metavar="REQUIREMENTS", help="What to build or change.")
]


@app.command("plan")
@handled
def plan(
    ctx: typer.Context,
    request: RequestArg,
    max_executors: ExecutorsOpt = 4,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE",
                     help="Also write the plan here (.json: JSON, else YAML); run it with "
                     "'orchestrator task create --plan FILE' or 'orchestrator run FILE --plan'."),
    ] = None,
    local: LocalOpt = False,
    simulate: SimulateOpt = False,
    profile: ProfileOpt = None,
    repo: RepoOpt = None,
    branch: BranchOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Plan a request: headless Claude Code reads the repository (changing nothing) and returns
    tasks with prompts, owned files and dependencies, a complexity estimate, an executor budget,
    a strategy and notes; the plan is checked for cycles, unknown dependencies, duplicate ids
    and files owned twice (predicted merge conflicts)."""
    text = " ".join(request)
    context = spawning(ctx, simulate=simulate, repo_url=repo, repo_branch=branch)
    repository = repository_for(context, text, shared_empty=True)
    outcome = make_plan(context, text, max_executors, repository, local=local, profile=profile)
    if output is not None:
        save_plan(outcome.plan, output)
    if as_json:
        emit_json(outcome.plan.model_dump(mode="json", exclude_none=True))
        return
    show_plan(outcome, output)


def show_plan(outcome: PlanOutcome, saved: Path | None) -> None:
    typer.echo(describe_plan(outcome.plan))
    made = f"planned by task {outcome.task_id}" if outcome.task_id else "planned on this host"
    cost = f", ${outcome.cost_usd:.4f}" if outcome.cost_usd is not None else ""
    typer.echo(f"({made}{cost})" + (f"; saved to {saved}" if saved else ""))


def planning_cost_line(outcome: PlanOutcome) -> str:
    cost = f"${outcome.cost_usd:.4f}" if outcome.cost_usd is not None else "unknown"
    return f"planning: {cost} ({outcome.task_id or 'on this host'})"


def plan_for_run(
    context: SpawnContext, text: str, executors: int, *, local: bool, profile: str | None,
    as_json: bool,
) -> tuple[Repository, PlanOutcome]:
    """Analyze and plan: the repository (a new empty one when none is given) and its plan."""
    repository = repository_for(context, text)
    if not as_json:
        where = "a new empty repository in the volume" if repository.greenfield else repository.url
        typer.echo(f"planning on {where} ...")
    outcome = make_plan(context, text, executors, repository, local=local, profile=profile)
    if not as_json:
        show_plan(outcome, None)
    return repository, outcome


def aggregate_run(
    context: SpawnContext, repository: Repository, tasks: list[Task], output_dir: Path | None,
    as_json: bool,
) -> Aggregate:
    """Merge what succeeded and export it; say so unless printing JSON."""
    result = aggregate(context, repository, [task.id for task in tasks], output_dir)
    if not as_json:
        lines = result.merge.describe().splitlines()[1:]
        typer.echo(f"merged into {result.merge.integration_branch} in the volume's mirror of "
                   f"{repository.url}:")
        for line in lines:
            typer.echo(line.replace("pushed to origin/", "pushed as "))
        if result.output_dir is not None:
            typer.echo(f"merged tree written to {result.output_dir} (a git repository, branch main)")
    return result


def run_document(outcome: PlanOutcome | None, result: Aggregate | None) -> dict[str, Any]:
    """What ``run --json`` adds to its summary: the plan and the merge."""
    document: dict[str, Any] = {}
    if outcome is not None:
        document["plan"] = plan_document(outcome.plan)
        document["planning_task"] = outcome.task_id
        document["planning_cost_usd"] = outcome.cost_usd
    if result is not None:
        document["merge"] = result.merge.model_dump(mode="json")
        document["output_dir"] = str(result.output_dir) if result.output_dir else None
    return document
