"""``orchestrator plan``: plan a request, show it, save it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestration_protocol import Task

from ..git.check_config import applicable_check, describe_applicable
from ..output import emit_json
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
    from ..planning.planner import save_plan
    from ..run.pipeline import make_plan, plan_lines, repository_for

    text = " ".join(request)
    context = spawning(ctx, simulate=simulate, repo_url=repo, repo_branch=branch)
    repository = repository_for(context, text, shared_empty=True)
    outcome = make_plan(context, text, max_executors, repository, local=local, profile=profile)
    if output is not None:
        save_plan(outcome.plan, output)
    if as_json:
        emit_json(outcome.plan.model_dump(mode="json", exclude_none=True))
        return
    probe = Task(id="check-probe", prompt="check", repo=repository.url, branch=repository.branch,
                 profile=profile)
    typer.echo(f"check: {describe_applicable(applicable_check(context.settings, probe))}")
    for line in plan_lines(outcome, output):
        typer.echo(line)
