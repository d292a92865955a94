"""``orchestrator task create|list|show|cancel|retry``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestration_protocol import Task, read_board, utc_now
from orchestration_protocol.untrusted import escape_line, fence
from orchestration_views.rows import status_rows

from ..config import positive_usd
from ..errors import (
    BadInput,
)
from ..git.check_config import applicable_check, describe_applicable
from ..output import emit_json
from ..tasks import create as task_files
from ..tasks.operations import cancel_task, task_details
from .common import (
    AgentOpt,
    AttemptTimeoutOpt,
    BranchOpt,
    JsonOpt,
    MaxBudgetOpt,
    ModelOpt,
    ProfileOpt,
    RepoOpt,
    RetriesOpt,
    SimulateOpt,
    handled,
    settings_of,
    spawning,
    task_app,
    task_fields,
)


def _parse_env(pairs: list[str] | None) -> dict[str, str]:
    env = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(f"--env {pair!r} is not NAME=VALUE; write it as NAME=VALUE.")
        env[key] = value
    return env


def _split_ids(values: list[str] | None) -> list[str]:
    return [part for value in values or [] for part in value.split(",") if part]


PromptArg = Annotated[
    str | None,
    typer.Argument(metavar="PROMPT", help="What the agent should do.", show_default=False),
]
TaskIdOpt = Annotated[
    str | None, typer.Option("--id", metavar="ID", help="Task id (default task-NNN).")
]
DependsOnOpt = Annotated[
    list[str] | None,
    typer.Option("--depends-on", help="Ids that must succeed first (repeatable or comma-separated)."),
]
EnvOpt = Annotated[
    list[str] | None,
    typer.Option("--env", metavar="NAME=VALUE", help="NAME=VALUE for the agent (not secrets)."),
]
PlanFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--plan", metavar="FILE",
        help="Create every task of a JSON/YAML plan file (what 'orchestrator plan -o' writes, "
        "or a list of tasks).",
    ),
]
RenameOpt = Annotated[
    bool,
    typer.Option(
        "--rename",
        help="With --plan: give an id already on the volume a number (-2, -3, ...) instead "
        "of refusing the plan; dependencies follow.",
    ),
]


@task_app.command("create")
@handled
def task_create(
    ctx: typer.Context,
    prompt: PromptArg = None,
    task_id: TaskIdOpt = None,
    profile: ProfileOpt = None,
    depends_on: DependsOnOpt = None,
    timeout: AttemptTimeoutOpt = None,
    retries: RetriesOpt = 0,
    model: ModelOpt = None,
    max_budget: MaxBudgetOpt = None,
    agent: AgentOpt = None,
    env: EnvOpt = None,
    repo: RepoOpt = None,
    branch: BranchOpt = None,
    plan: PlanFileOpt = None,
    rename: RenameOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a new task file (or all of a plan's)."""
    layout = settings_of(ctx).layout
    fields = task_fields(
        prompt, id=task_id, profile=profile, depends_on=_split_ids(depends_on), timeout_s=timeout,
        max_attempts=retries + 1 if retries else None, model=model,
        max_budget_usd=positive_usd(max_budget, "--max-budget"), agent=agent,
        env=_parse_env(env), repo=repo, branch=branch,
    )
    if plan is not None:
        fields.pop("id", None)
        tasks = task_files.create_plan(layout, plan, fields, rename=rename)
    elif prompt is None:
        raise BadInput("Give a PROMPT, or --plan FILE; see 'orchestrator task create --help'.")
    else:
        tasks = [task_files.create_task(layout, fields)]
    if as_json:
        emit_json([task.model_dump(mode="json", exclude_none=True) for task in tasks])
    else:
        for task in tasks:
            typer.echo(f"created {task.id}: {layout.task_file(task.id)}")


@task_app.command("list")
@handled
def task_list(
    ctx: typer.Context,
    state: Annotated[
        str | None, typer.Option("--state", metavar="STATE", help="Only tasks in this state.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tasks with their state."""
    layout = settings_of(ctx).layout
    now = utc_now()
    board = read_board(layout)
    rows = status_rows(board, board.states(now=now), now)
    rows = [row for row in rows if state is None or row["state"] == state]
    if as_json:
        emit_json([{key: row[key] for key in ("id", "state", "attempt", "prompt")} for row in rows])
        return
    for row in rows:
        prompt = (row["prompt"] or "").splitlines()[0][:70] if row["prompt"] else ""
        typer.echo(f"{row['id']:<24} {row['state']:<10} {prompt}")


@task_app.command("show")
@handled
def task_show(ctx: typer.Context, task_id: str, as_json: JsonOpt = False) -> None:
    """Show everything about one task: the task, its claim, heartbeat and result."""
    settings = settings_of(ctx)
    details = task_details(settings.layout, task_id)
    if details["task"] is not None:
        found = applicable_check(settings, Task.model_validate(details["task"]))
        details["check_applies"] = describe_applicable(found)
    if as_json:
        emit_json(details)
        return
    for key in (
        "id",
        "state",
        "attempt",
        "max_attempts",
        "profile",
        "agent",
        "depends_on",
        "worker",
        "phase",
        "branch",
        "round",
        "check",
        "check_applies",
        "cost_usd",
        "cost_source",
        "max_budget_usd",
        "error",
        "budget_error",
        "log_file",
    ):
        if details.get(key) not in (None, [], ""):
            typer.echo(escape_line(f"{key}: {details[key]}"))
    for entry in details["rounds"][1:]:
        where = " (integration failure)" if entry["integration"] else ""
        typer.echo(f"round {entry['number']}: {entry['kind']}, attempt {entry['attempt']}{where}")
    typer.echo("prompt:")
    typer.echo(fence(details["prompt"] or "", f"the prompt of task {details['id']}", limit=8000))
    for problem in details["problems"]:
        typer.echo(f"problem: {problem}")


@task_app.command("cancel")
@handled
def task_cancel(
    ctx: typer.Context,
    task_id: str,
    reason: Annotated[
        str | None, typer.Option("--reason", metavar="TEXT", help="Why (kept in the result).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask a task to stop; one nobody runs yet is cancelled at once."""
    state = cancel_task(settings_of(ctx).layout, task_id, reason)
    if as_json:
        emit_json({"id": task_id, "state": state.value, "cancel_requested": True})
    elif state.value == "cancelled":
        typer.echo(f"{task_id}: cancelled")
    else:
        typer.echo(
            f"{task_id}: cancel requested; it is {state.value} (its worker stops within seconds)"
        )


@task_app.command("retry")
@handled
def task_retry(
    ctx: typer.Context,
    task_id: str,
    profile: ProfileOpt = None,
    simulate: SimulateOpt = False,
    repo: RepoOpt = None,
    branch: BranchOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a failed, timed-out or cancelled task again (beyond max_attempts if need be)."""
    from ..run.retry import retry_task

    context = spawning(ctx, simulate=simulate, repo_url=repo, repo_branch=branch)
    attempt, worker = retry_task(context, task_id, profile)
    if as_json:
        emit_json({"id": task_id, "attempt": attempt, "worker": worker.name})
    else:
        typer.echo(f"{task_id}: attempt {attempt} started in {worker.name}")
