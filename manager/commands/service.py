"""Running as a service: ``dashboard`` (the read-only web board) and ``healthcheck`` (what a
Compose or Docker healthcheck runs against a dispatcher)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import EXIT_OK, BadInput
from ..output import emit_json
from ..run.health import check_health
from .common import JsonOpt, app, handled, settings_of


@app.command("dashboard")
@handled
def dashboard(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="ADDRESS",
            help="Address to listen on; anything but loopback needs a token (made and printed "
            "when none is given).",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", help="TCP port to listen on.")
    ] = 8450,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="The token every request must carry (default $ORCHESTRATOR_DASHBOARD_TOKEN).",
        ),
    ] = None,
) -> None:
    """A live web page of the fleet (read-only): tasks by state, each task's prompt, attempts,
    log, diff, cost and egress, and a timeline; updated as the volume changes."""
    from dashboard.server import (
        DashboardSettingError,
        port_problem,
        resolve_dashboard_settings,
        serve,
    )
    from orchestration_views.rows import root_problem

    settings = settings_of(ctx)
    try:
        chosen = resolve_dashboard_settings(settings.root, host, port, token_file)
    except DashboardSettingError as error:
        raise BadInput(str(error)) from None
    problem = port_problem(chosen.host, chosen.port)
    if problem:
        raise BadInput(problem)
    missing = root_problem(settings.layout)
    if missing:
        typer.echo(f"dashboard: {missing} (the page says so until it is)", err=True)
    try:
        serve(chosen)
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C: uvicorn has closed the connections already
        typer.echo("dashboard: stopped", err=True)


@app.command("healthcheck")
@handled
def healthcheck(
    ctx: typer.Context,
    alive_file: Annotated[
        Path | None,
        typer.Option(
            "--alive-file",
            metavar="FILE",
            help="The file a dispatcher touches on every pass (default $ORCHESTRATOR_ALIVE_FILE).",
        ),
    ] = None,
    max_age: Annotated[
        float,
        typer.Option("--max-age", metavar="SECONDS", help="Oldest pass that counts as alive."),
    ] = 30.0,
    gateway: Annotated[
        bool, typer.Option("--gateway/--no-gateway", help="Also check that the gateway answers.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Exit 0 when the dispatcher passed through its loop lately and the gateway answers;
    else one sentence and exit 3 (for Compose and Docker healthchecks)."""
    settings = settings_of(ctx)
    checks = check_health(settings, alive_file, max_age_s=max_age, gateway=gateway)
    if as_json:
        emit_json({"healthy": True, "checks": checks})
    else:
        typer.echo("healthy: " + "; ".join(checks))
    raise typer.Exit(EXIT_OK)
