"""Following work: ``status``, ``wait``, ``watch``, ``logs``, ``result``, ``egress``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from orchestration_protocol import read_board, utc_now

from ..config import ManagerSettings
from ..errors import (
    EXIT_OK,
    EXIT_TASKS_FAILED,
)
from ..ledger import fleet_budget_view, ledger_cache
from ..monitor import View, check_scope, follow
from ..output import console, emit_json
from ..pool import pool_summaries, with_pool_tasks
from ..tasks import current_result
from ..views import (
    board_problems,
    cost_lines,
    result_json,
    result_text,
    rows_total_cost,
    status_rows,
    status_table,
)
from ..workers import follow_log, read_log
from .common import (
    IdsArg,
    JsonOpt,
    app,
    backend_for,
    finish,
    handled,
    print_summary,
    settings_of,
    state_printer,
)


@app.command("status")
@handled
def status(ctx: typer.Context, ids: IdsArg = None, as_json: JsonOpt = False) -> None:
    """A table of every task: state, attempt, age, worker, cost, branch; the total cost, the
    fleet budget; and unusable files."""
    settings = settings_of(ctx)
    layout = settings.layout
    board = read_board(layout)
    now = utc_now()
    alive = containers_alive(settings)
    states = board.states(now=now, container_alive=alive)
    scope = check_scope(board, ids) if ids else None
    ledgers = ledger_cache(layout)
    rows = status_rows(board, states, now, scope, ledgers)
    fleet = fleet_budget_view(layout, ledgers)
    problems = board_problems(board)
    pools = pool_summaries(layout)
    if as_json:
        emit_json(
            {
                "root": str(settings.root),
                "tasks": rows,
                "total_cost_usd": rows_total_cost(rows),
                "fleet_budget": fleet,
                "pools": pools,
                "problems": problems,
            }
        )
        return
    out = console()
    out.print(status_table(rows, title=f"{settings.root}: {len(rows)} tasks"))
    for line in cost_lines(rows, fleet):
        out.print(line)
    for summary in pools:
        out.print(
            f"pool {summary['pool']} ({summary['profile']}): {summary['idle']} idle, "
            f"{summary['busy']} busy, keeps {summary['size']}"
        )
    for problem in problems:
        out.print(f"[red]error:[/red] {problem['error']}", markup=True)


def containers_alive(settings: ManagerSettings) -> dict[str, bool] | None:
    """Which tasks have a live worker, when the backend answers at once; None otherwise."""
    try:
        workers = with_pool_tasks(settings.layout, backend_for(settings).workers.all())
    except Exception:  # status must work without Docker; it then trusts the heartbeats alone
        return None
    alive: dict[str, bool] = {}
    for worker in workers:
        alive[worker.task_id] = alive.get(worker.task_id, False) or worker.running
    return alive


@app.command("wait")
@handled
def wait(
    ctx: typer.Context,
    ids: IdsArg = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", metavar="SECONDS", help="Give up after this many seconds (exit 4)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Wait until the tasks are settled; exit 0 only if every one succeeded."""
    layout = settings_of(ctx).layout
    scope = check_scope(read_board(layout), ids) if ids else None
    report = state_printer(as_json=False)

    def on_view(view: View) -> bool:
        if not as_json:
            report({task_id: state.value for task_id, state in view.progress.states.items()})
        return view.progress.done

    view = follow(layout, scope, on_view, timeout_s=timeout)
    rows = status_rows(view.board, view.states, view.now, scope, ledger_cache(layout))
    print_summary(rows, view.progress, as_json)
    finish(view.progress)


@app.command("watch")
@handled
def watch(
    ctx: typer.Context,
    ids: IdsArg = None,
    until_done: Annotated[
        bool, typer.Option("--until-done", help="Exit once every task is settled.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """A live view of the tasks, redrawn when the volume changes (JSON lines with --json)."""
    from ..live import watch_live

    layout = settings_of(ctx).layout
    scope = check_scope(read_board(layout), ids) if ids else None
    if as_json:
        report = state_printer(as_json=True)

        def on_view(view: View) -> bool:
            report({task_id: state.value for task_id, state in view.progress.states.items()})
            return until_done and view.progress.done

        follow(layout, scope, on_view, kinds=("task", "status", "result", "cancel"))
        return
    watch_live(layout, scope, until_done=until_done)


@app.command("logs")
@handled
def logs(
    ctx: typer.Context,
    task_id: str,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the task ends.")
    ] = False,
    tail: Annotated[
        int | None, typer.Option("--tail", metavar="N", help="Only the last N lines.")
    ] = None,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker",
            help="The worker process's own output (docker logs) instead of the task log.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print a task's log (the agent's output, every attempt)."""
    settings = settings_of(ctx)
    from ..tasks import require_task

    require_task(settings.layout, task_id)
    if worker:
        from ..pool import worker_of_task

        backend = backend_for(settings)
        name = worker_of_task(settings.layout, backend, task_id, backend.names.worker(task_id))
        text = backend.workers.logs(name, tail=tail)
    elif follow_ and not as_json:
        for chunk in follow_log(settings.layout, task_id, tail):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        return
    else:
        text = read_log(settings.layout, task_id, tail)
    if as_json:
        emit_json({"id": task_id, "log": text})
    else:
        sys.stdout.write(text)


@app.command("result")
@handled
def result(ctx: typer.Context, task_id: str, as_json: JsonOpt = False) -> None:
    """Print a task's result (its cost by the gateway's ledger); exit 0 if it succeeded, 1 if not, 4 if there is none yet."""
    layout = settings_of(ctx).layout
    found = current_result(layout, task_id)
    ledger = ledger_cache(layout).summary(task_id)
    if as_json:
        emit_json(result_json(found, ledger))
    else:
        typer.echo(result_text(found, ledger))
    raise typer.Exit(EXIT_OK if found.status.value == "success" else EXIT_TASKS_FAILED)


@app.command("egress")
@handled
def egress(
    ctx: typer.Context,
    task_id: Annotated[
        str | None,
        typer.Argument(
            metavar="ID", help="Only this task (default: every task).", show_default=False
        ),
    ] = None,
    denied: Annotated[bool, typer.Option("--denied", help="Only refused connections.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Every outbound connection a task's agent asked the gateway for, allowed or refused,
    newest last: time, task, attempt, method, host:port, verdict, reason."""
    from ..egress import egress_log, egress_text

    entries = egress_log(settings_of(ctx).layout, task_id, denied_only=denied)
    if as_json:
        emit_json([entry.model_dump(mode="json", exclude_none=True) for entry in entries])
    elif entries:
        typer.echo(egress_text(entries))
    else:
        kind = "refused connections" if denied else "connections"
        typer.echo(f"no {kind} logged" + (f" for {task_id}" if task_id else ""))
