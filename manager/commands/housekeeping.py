"""``cleanup``, ``archive``, ``doctor``, ``schema``, ``merge`` and ``push``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from orchestration_protocol import TaskState, json_schemas, utc_now
from orchestration_protocol.archive import archive_ended, archive_layout

from ..credentials import collect_secrets
from ..errors import (
    EXIT_ENVIRONMENT,
    EXIT_OK,
    EXIT_TASKS_FAILED,
    BadInput,
)
from ..output import emit_json
from ..views.workers import cleanup_workers
from .common import (
    IdsArg,
    JsonOpt,
    RepoOpt,
    SimulateOpt,
    app,
    backend_for,
    handled,
    settings_of,
)


@app.command("archive")
@handled
def archive(
    ctx: typer.Context,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            metavar="DATE",
            help="Only tasks that ended before DATE (ISO, UTC if no zone).",
        ),
    ] = None,
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Only tasks in this state (repeatable): success, failed, cancelled, timeout.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move ended tasks out of the hot set into archive/ (result, logs, task show and the
    dashboard still read them); a pending, running or lost task, or one that a task staying
    depends on, is never archived."""
    layout = settings_of(ctx).layout
    states = {_final_state(name) for name in state} if state else None
    archived = archive_ended(layout, before=_date(before), states=states, now=utc_now())
    if as_json:
        emit_json({"archived": archived, "archive": str(archive_layout(layout).root)})
    else:
        typer.echo(f"{len(archived)} tasks archived into {archive_layout(layout).root}")


def _date(text: str | None) -> datetime | None:
    """``--before``'s DATE as an aware datetime (UTC when it names no zone)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(
            f"--before {text!r} is not a date; give one such as 2026-12-01 or 2026-12-01T18:30."
        ) from None
    return when.replace(tzinfo=when.tzinfo or UTC)


def _final_state(name: str) -> TaskState:
    try:
        found = TaskState(name)
    except ValueError:
        found = None
    if found is None or not found.is_final:
        raise BadInput(
            f"--state {name!r} is not an ended state; use success, failed, cancelled or timeout."
        )
    return found


@app.command("cleanup")
@handled
def cleanup(
    ctx: typer.Context,
    all_: Annotated[
        bool, typer.Option("--all", help="Also stop and remove running workers.")
    ] = False,
    simulation: Annotated[
        bool, typer.Option("--simulation", help="Also stop the scripted model.")
    ] = False,
    gateway: Annotated[
        bool, typer.Option("--gateway", help="Also stop this root's gateway.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove ended worker containers (task files, results and logs stay on the volume)."""
    settings = settings_of(ctx)
    backend = backend_for(ctx, settings)
    removed = cleanup_workers(backend, include_running=all_, layout=settings.layout)
    stopped = gateway_stopped = False
    if simulation:
        stopped = backend.services.stop_scripted_model()
    if gateway:
        gateway_stopped = backend.services.stop_gateway()
    if as_json:
        emit_json(
            {"removed": removed, "scripted_model_stopped": stopped, "gateway_stopped": gateway_stopped}
        )
        return
    typer.echo(f"removed {len(removed)} workers" + (f": {', '.join(removed)}" if removed else ""))
    if stopped:
        typer.echo("stopped the scripted model")
    if gateway_stopped:
        typer.echo("stopped the gateway")


@app.command("doctor")
@handled
def doctor_command(
    ctx: typer.Context, simulate: SimulateOpt = False, as_json: JsonOpt = False
) -> None:
    """Check Docker, images, the volume, profiles and credentials (exit 3 if any fails), and list
    what runs on the engine for every root: gateways (and when each stops itself when idle),
    workers, scripted models, dispatchers, pools, Compose services, each root's stop command."""
    from ..run.preflight import doctor
    from ..views.running import render

    settings = settings_of(ctx, simulate=simulate)
    report = doctor(settings, simulate=settings.simulate)
    if as_json:
        running = None if report.running is None else [
            view.model_dump(mode="json") for view in report.running
        ]
        emit_json({
            "ok": report.ok, "checks": [check.__dict__ for check in report.checks],
            "running": running, "running_problem": report.running_problem,
        })
    else:
        for check in report.checks:
            typer.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.message}")
        if report.running is None:
            typer.echo(f"running: not known ({report.running_problem})")
        else:
            typer.echo("\n".join(render(report.running)))
    raise typer.Exit(EXIT_OK if report.ok else EXIT_ENVIRONMENT)


@app.command("schema")
@handled
def schema(
    kind: Annotated[
        str | None, typer.Argument(help="task, claim, status, result or cancel (default all).")
    ] = None,
    as_json: JsonOpt = True,
) -> None:
    """Print the JSON Schema of each protocol file."""
    schemas = json_schemas()
    if kind is not None and kind not in schemas:
        raise BadInput(f"No schema {kind!r}; choose one of {', '.join(schemas)}.")
    emit_json(schemas[kind] if kind else schemas)


@app.command("merge")
@handled
def merge(
    ctx: typer.Context,
    ids: IdsArg = None,
    repo_dir: Annotated[
        Path, typer.Option("--repo-dir", metavar="DIR", help="The clone to merge into.")
    ] = Path("."),
    branch: Annotated[
        str, typer.Option("--branch", metavar="NAME", help="The integration branch.")
    ] = "orchestrator/integration",
    push: Annotated[
        bool,
        typer.Option("--push", help="Push the integration branch and the tasks' branches."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Merge the tasks' branches into an integration branch, in dependency order."""
    try:
        from ..git.merge import MergeOutcome, merge_tasks
    except ImportError as error:
        raise BadInput(f"merge is not available in this installation ({error}).") from error
    from ..git.mirror import PushReport, push_task_branches

    settings = settings_of(ctx)
    credentials = collect_secrets()
    report = merge_tasks(
        settings.layout, repo_dir, ids or None, integration_branch=branch, push=push,
        repo_url=settings.repo_url, credentials=credentials,
    )
    worked = [task.task_id for task in report.tasks if task.outcome != MergeOutcome.SKIPPED]
    branches = PushReport()
    if push and report.pushed and worked:  # merged ones and conflicting ones, to compare
        branches = push_task_branches(
            settings.layout, worked, repo_url=settings.repo_url, credentials=credentials
        )
    ok = report.ok and branches.ok
    if as_json:
        emit_json({**report.model_dump(mode="json"), "branches": branches.model_dump(mode="json"), "ok": ok})
    else:
        typer.echo(report.describe())
        if branches.tasks:
            typer.echo(branches.describe())
    raise typer.Exit(EXIT_OK if ok else EXIT_TASKS_FAILED)


@app.command("push")
@handled
def push_command(ctx: typer.Context, ids: IdsArg = None, as_json: JsonOpt = False) -> None:
    """Push the tasks' branches (orchestrator/<id>) from the volume's mirror to the remote;
    exit 1 if any was not found or refused."""
    from ..git.mirror import push_task_branches

    settings = settings_of(ctx)
    report = push_task_branches(
        settings.layout, ids or None, repo_url=settings.repo_url, credentials=collect_secrets()
    )
    if as_json:
        emit_json({**report.model_dump(mode="json"), "ok": report.ok})
    else:
        typer.echo(report.describe())
    raise typer.Exit(EXIT_OK if report.ok else EXIT_TASKS_FAILED)


UrlArg = Annotated[
    str | None,
    typer.Argument(metavar="URL", help="The repository (default --repo or $REPO_URL).", show_default=False),
]


@app.command("mirror")
@handled
def mirror_command(
    ctx: typer.Context, url: UrlArg = None, repo: RepoOpt = None, as_json: JsonOpt = False
) -> None:
    """Make (or refresh) the root's mirror of a repository, which workers clone from: what a
    worker started by hand ('orchestrator-worker --root DIR') needs before its first task."""
    from ..git.access import redact_url
    from ..git.mirror import ensure_mirror

    settings = settings_of(ctx, repo_url=url or repo)
    if not settings.repo_url:
        raise BadInput("Give the repository: 'orchestrator mirror URL' (or set $REPO_URL).")
    path = ensure_mirror(settings.layout, settings.repo_url, credentials=collect_secrets())
    if as_json:
        emit_json({"url": redact_url(settings.repo_url), "mirror": str(path)})
    else:
        typer.echo(f"mirror of {redact_url(settings.repo_url)}: {path}")
