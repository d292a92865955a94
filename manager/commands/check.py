"""``orchestrator check``: run the repository's check on tasks' branches or the integration branch."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import EXIT_TASKS_FAILED, BadInput
from ..output import emit_json
from .common import JsonOpt, ProfileOpt, SimulateOpt, app, handled, spawning

CheckIdsArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="TASK", help="Tasks whose branches to check.", show_default=False),
]
IntegrationOpt = Annotated[
    bool,
    typer.Option("--integration", help="Check orchestrator/integration (the merged branches)."),
]


@app.command("check")
@handled
def check(
    ctx: typer.Context,
    ids: CheckIdsArg = None,
    integration: IntegrationOpt = False,
    profile: ProfileOpt = None,
    simulate: SimulateOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the repository's check (a task of kind check, in a hardened worker) on each TASK's
    branch and/or on orchestrator/integration; exit 1 unless every check passed."""
    if not ids and not integration:
        raise BadInput("Name a TASK whose branch to check, or give --integration.")
    from ..git.mirror import fast_forward_from_origin
    from ..run.check import check_lines, check_tasks, integration_target, task_target

    context = spawning(ctx, simulate=simulate)
    layout = context.settings.layout
    targets = [task_target(layout, task_id) for task_id in ids or []]
    if integration:
        target = integration_target(layout, context.settings.repo_url)
        if target.repo:  # 'orchestrator merge --push' put it on origin; the workers read the mirror
            context.mirror_url(target.repo)
            fast_forward_from_origin(layout, target.repo, target.branch, credentials=context.secrets)
        targets.append(target)
    reports = check_tasks(context, targets, profile=profile)
    if as_json:
        emit_json({"checks": [report.document() for report in reports]})
    else:
        for report in reports:
            typer.echo("\n".join(check_lines(report)))
    if not all(report.passed for report in reports):
        raise typer.Exit(EXIT_TASKS_FAILED)
