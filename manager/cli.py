"""``orchestrator`` and ``spawn-worker``: thin commands over the manager's modules.

Every command that prints takes ``--json``; exit codes are in :mod:`manager.errors`
(0 ok, 1 some task did not succeed, 2 bad input, 3 machine not ready, 4 not finished, 130
interrupted). A failure a user can cause is one sentence naming the thing and the fix.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from orchestration_protocol import ProtocolError, json_schemas, read_board, utc_now

from . import plan as planning
from .backends import Backend, make_backend
from .config import ManagerSettings, resolve_settings
from .dispatch import Dispatcher, Tick
from .errors import (
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TASKS_FAILED,
    BadInput,
    ManagerError,
)
from .monitor import View, check_scope, follow
from .output import console, emit_json, emit_json_line, report_error
from .preflight import doctor
from .progress import Progress
from .spawn import SpawnContext, prepare_spawning, spawn_task
from .tasks import cancel_task, current_result, retry_task, task_details
from .views import board_problems, result_text, status_rows, status_table
from .workers import cleanup_workers, follow_log, read_log

HELP = """Run many headless Claude Code workers in containers, coordinated through a shared
volume. Typical flow: `orchestrator run "prompt one" "prompt two" --max-workers 4`, or
`orchestrator task create ...`, `orchestrator spawn default task-001`, `orchestrator wait`."""

app = typer.Typer(
    name="orchestrator",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
task_app = typer.Typer(
    help="Create, list, show, cancel and retry tasks.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(task_app, name="task")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
SimulateOpt = Annotated[
    bool,
    typer.Option(
        "--simulate",
        help="Use the scripted model instead of a real one (no credentials, no cost; also "
        "$ORCHESTRATOR_SIMULATE=1).",
    ),
]
RepoOpt = Annotated[
    str | None,
    typer.Option(
        "--repo", metavar="URL", help="Repository for tasks that name none (default $REPO_URL)."
    ),
]
BranchOpt = Annotated[
    str | None,
    typer.Option("--branch", metavar="NAME", help="Branch to start from (default $REPO_BRANCH)."),
]
MountOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--mount", help="Extra bind mount HOST:CONTAINER[:ro] for every worker (repeatable)."
    ),
]
ProfileOpt = Annotated[
    str | None, typer.Option("--profile", metavar="NAME", help="Worker profile.")
]
MaxWorkersOpt = Annotated[
    int,
    typer.Option(
        "--max-workers",
        "-n",
        metavar="N",
        min=1,
        envvar="ORCHESTRATOR_MAX_WORKERS",
        help="Most workers running at once (default $ORCHESTRATOR_MAX_WORKERS or 4).",
    ),
]
IdsArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="IDS", help="Task ids (default: every task on the volume).", show_default=False
    ),
]


@dataclass(frozen=True)
class Globals:
    """The options every command shares (given before the command name)."""

    root: Path | None = None
    backend: str | None = None
    volume: str | None = None
    network: str | None = None
    profiles: Path | None = None


@app.callback()
def options(
    ctx: typer.Context,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root", help="Orchestration root (default $ORCHESTRATION_DIR or /orchestration)."
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Where workers run: docker or local (default $ORCHESTRATOR_BACKEND or docker).",
        ),
    ] = None,
    volume: Annotated[
        str | None,
        typer.Option(
            "--volume", help="What workers mount at /orchestration: a volume name or a host path."
        ),
    ] = None,
    network: Annotated[
        str | None, typer.Option("--network", metavar="NAME", help="Docker network for workers.")
    ] = None,
    profiles: Annotated[
        Path | None,
        typer.Option(
            "--profiles",
            help="Profiles file (default $ORCHESTRATOR_PROFILES, <root>/profiles.yaml, ~/.config/claude-orchestrator/profiles.yaml).",
        ),
    ] = None,
) -> None:
    """Shared options."""
    os.umask(0)  # directories made here must be writable by workers running as another uid
    ctx.obj = Globals(root, backend, volume, network, profiles)


def settings_of(ctx: typer.Context, **extra: Any) -> ManagerSettings:
    """The command's settings: shared options, then the command's own."""
    given: Globals = ctx.obj or Globals()
    backend = given.backend or os.environ.get("ORCHESTRATOR_BACKEND") or "docker"
    if backend not in ("docker", "local"):
        raise BadInput(f"Unknown backend {backend!r}; use --backend docker or --backend local.")
    try:
        return resolve_settings(
            given.root,
            backend=backend,
            volume=given.volume,
            network=given.network,
            profiles_path=given.profiles,
            **extra,
        )
    except ValidationError as error:
        raise BadInput(f"Bad setting: {error.errors()[0]['msg']}.") from error


F = TypeVar("F", bound=Callable[..., Any])
_OPEN_BACKENDS: list[Backend] = []


def _backend(settings: ManagerSettings) -> Backend:
    """The settings' backend, closed when the command ends."""
    backend = make_backend(settings)
    _OPEN_BACKENDS.append(backend)
    return backend


def handled(function: F) -> F:
    """Turn user-caused failures into one sentence and an exit code, never a traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return function(*args, **kwargs)
        except (ManagerError, ProtocolError) as error:
            raise typer.Exit(report_error(error, as_json)) from None
        except KeyboardInterrupt:
            typer.echo(
                "interrupted: workers keep running; 'orchestrator status' shows them.", err=True
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            while _OPEN_BACKENDS:
                _OPEN_BACKENDS.pop().close()

    return wrapper  # type: ignore[return-value]


def _finish(progress: Progress) -> None:
    raise typer.Exit(EXIT_OK if progress.succeeded else EXIT_TASKS_FAILED)


# --- tasks ---------------------------------------------------------------------------------


def _task_fields(prompt: str | None, **fields: Any) -> dict[str, Any]:
    chosen = {key: value for key, value in fields.items() if value not in (None, [], {})}
    if prompt is not None:
        chosen["prompt"] = prompt
    return chosen


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


@task_app.command("create")
@handled
def task_create(
    ctx: typer.Context,
    prompt: Annotated[
        str | None,
        typer.Argument(metavar="PROMPT", help="What the agent should do.", show_default=False),
    ] = None,
    task_id: Annotated[
        str | None, typer.Option("--id", metavar="ID", help="Task id (default task-NNN).")
    ] = None,
    profile: ProfileOpt = None,
    depends_on: Annotated[
        list[str] | None,
        typer.Option(
            "--depends-on", help="Ids that must succeed first (repeatable or comma-separated)."
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", metavar="SECONDS", help="Seconds per attempt.")
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", metavar="N", min=0, help="Extra attempts after a failure.")
    ] = 0,
    model: Annotated[
        str | None, typer.Option("--model", metavar="NAME", help="Model for the agent.")
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", metavar="KIND", help="claude (default) or command.")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", metavar="NAME=VALUE", help="NAME=VALUE for the agent (not secrets)."),
    ] = None,
    repo: RepoOpt = None,
    branch: BranchOpt = None,
    plan: Annotated[
        Path | None,
        typer.Option("--plan", metavar="FILE", help="Create every task of a JSON/YAML plan file."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a new task file (or all of a plan's)."""
    layout = settings_of(ctx).layout
    fields = _task_fields(
        prompt,
        id=task_id,
        profile=profile,
        depends_on=_split_ids(depends_on),
        timeout_s=timeout,
        max_attempts=retries + 1 if retries else None,
        model=model,
        agent=agent,
        env=_parse_env(env),
        repo=repo,
        branch=branch,
    )
    if plan is not None:
        fields.pop("id", None)
        tasks = planning.create_plan(layout, plan, fields)
    elif prompt is None:
        raise BadInput("Give a PROMPT, or --plan FILE; see 'orchestrator task create --help'.")
    else:
        tasks = [planning.create_task(layout, fields)]
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
    details = task_details(settings_of(ctx).layout, task_id)
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
        "error",
        "log_file",
    ):
        if details.get(key) not in (None, [], ""):
            typer.echo(f"{key}: {details[key]}")
    typer.echo(f"prompt: {details['prompt']}")
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
    context = _spawning(ctx, simulate=simulate, repo_url=repo, repo_branch=branch)
    attempt, worker = retry_task(context, task_id, profile)
    if as_json:
        emit_json({"id": task_id, "attempt": attempt, "worker": worker.name})
    else:
        typer.echo(f"{task_id}: attempt {attempt} started in {worker.name}")


# --- workers -------------------------------------------------------------------------------


def _spawning(ctx: typer.Context, **extra: Any) -> SpawnContext:
    settings = settings_of(ctx, **extra)
    return prepare_spawning(settings, _backend(settings))


def _spawn(ctx: typer.Context, profile: str, task_id: str, as_json: bool, **extra: Any) -> None:
    context = _spawning(ctx, **extra)
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
    follow_hint = (
        f"docker logs -f {worker.name}"
        if context.backend.name == "docker"
        else f"orchestrator logs {task_id} -f"
    )
    typer.echo(
        f"started {worker.name} (profile {profile}, attempt {worker.attempt}); "
        f"follow it with: {follow_hint}"
    )


@app.command("spawn")
@handled
def spawn(
    ctx: typer.Context,
    profile: Annotated[
        str, typer.Argument(metavar="PROFILE", help="Worker profile, e.g. default or flutter.")
    ],
    task_id: Annotated[str, typer.Argument(metavar="TASK_ID", help="The task to run.")],
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


def _printer(as_json: bool) -> Callable[[dict[str, str]], None]:
    last: dict[str, str] = {}

    def report(states: dict[str, str]) -> None:
        for task_id, state in sorted(states.items()):
            if last.get(task_id) != state:
                last[task_id] = state
                if as_json:
                    emit_json_line({"id": task_id, "state": state, "at": utc_now().isoformat()})
                else:
                    typer.echo(f"{time.strftime('%H:%M:%S')} {task_id}: {state}")

    return report


def _print_summary(view_rows: list[dict[str, Any]], progress: Progress, as_json: bool) -> None:
    if as_json:
        emit_json(
            {"succeeded": progress.succeeded, "summary": progress.counts(), "tasks": view_rows}
        )
        return
    console().print(status_table(view_rows))
    typer.echo(
        f"{progress.summary()}: " + ("all succeeded" if progress.succeeded else "not all succeeded")
    )


def _dispatch(
    context: SpawnContext,
    dispatcher: Dispatcher,
    *,
    until_settled: bool,
    as_json: bool,
    quiet_json: bool,
) -> Tick:
    report = _printer(as_json)

    def on_tick(tick: Tick) -> None:
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
    agent: Annotated[
        str | None, typer.Option("--agent", metavar="KIND", help="claude (default) or command.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", metavar="SECONDS", help="Seconds per attempt.")
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", metavar="N", min=0, help="Extra attempts after a failure.")
    ] = 0,
    model: Annotated[
        str | None, typer.Option("--model", metavar="NAME", help="Model for the agent.")
    ] = None,
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
    context = _spawning(ctx, simulate=simulate, repo_url=repo, repo_branch=branch, mounts=mount)
    chosen = context.profile(profile)
    context.backend.preflight(chosen)
    fields = _task_fields(
        None,
        profile=profile,
        agent=agent or (chosen.agent.value if chosen.agent else None),
        timeout_s=timeout,
        max_attempts=retries + 1 if retries else None,
        model=model,
    )
    layout = context.settings.layout
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
    rows = status_rows(tick.board, tick.states, utc_now(), [task.id for task in tasks])
    _print_summary(rows, tick.progress, as_json)
    _finish(tick.progress)


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
    repo: RepoOpt = None,
    branch: BranchOpt = None,
    mount: MountOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue mode: keep up to N workers busy on tasks whose dependencies succeeded."""
    context = _spawning(ctx, simulate=simulate, repo_url=repo, repo_branch=branch, mounts=mount)
    dispatcher = Dispatcher(context, max_workers=max_workers, profile=profile)
    signal.signal(signal.SIGTERM, _interrupt)
    tick = _dispatch(
        context, dispatcher, until_settled=until_done, as_json=as_json, quiet_json=False
    )
    if until_done:
        _finish(tick.progress)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


# --- watching ------------------------------------------------------------------------------


@app.command("status")
@handled
def status(ctx: typer.Context, ids: IdsArg = None, as_json: JsonOpt = False) -> None:
    """A table of every task: state, attempt, age, worker, cost, branch; and unusable files."""
    settings = settings_of(ctx)
    board = read_board(settings.layout)
    now = utc_now()
    alive = _containers_alive(settings)
    states = board.states(now=now, container_alive=alive)
    scope = check_scope(board, ids) if ids else None
    rows = status_rows(board, states, now, scope)
    problems = board_problems(board)
    if as_json:
        emit_json({"root": str(settings.root), "tasks": rows, "problems": problems})
        return
    out = console()
    out.print(status_table(rows, title=f"{settings.root}: {len(rows)} tasks"))
    for problem in problems:
        out.print(f"[red]error:[/red] {problem['error']}", markup=True)


def _containers_alive(settings: ManagerSettings) -> dict[str, bool] | None:
    """Which tasks have a live worker, when the backend answers at once; None otherwise."""
    try:
        workers = _backend(settings).workers()
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
    report = _printer(as_json=False)

    def on_view(view: View) -> bool:
        if not as_json:
            report({task_id: state.value for task_id, state in view.progress.states.items()})
        return view.progress.done

    view = follow(layout, scope, on_view, timeout_s=timeout)
    rows = status_rows(view.board, view.states, view.now, scope)
    _print_summary(rows, view.progress, as_json)
    _finish(view.progress)


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
    from .live import watch_live

    layout = settings_of(ctx).layout
    scope = check_scope(read_board(layout), ids) if ids else None
    if as_json:
        report = _printer(as_json=True)

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
    from .tasks import require_task

    require_task(settings.layout, task_id)
    if worker:
        from .backends import worker_name

        text = _backend(settings).logs(worker_name(task_id), tail=tail)
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
    """Print a task's result; exit 0 if it succeeded, 1 if not, 4 if there is none yet."""
    found = current_result(settings_of(ctx).layout, task_id)
    if as_json:
        emit_json(found.model_dump(mode="json", exclude_none=True))
    else:
        typer.echo(result_text(found))
    raise typer.Exit(EXIT_OK if found.status.value == "success" else EXIT_TASKS_FAILED)


# --- housekeeping --------------------------------------------------------------------------


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
    as_json: JsonOpt = False,
) -> None:
    """Remove ended worker containers (task files, results and logs stay on the volume)."""
    settings = settings_of(ctx)
    backend = _backend(settings)
    removed = cleanup_workers(backend, include_running=all_)
    stopped = False
    if simulation:
        from .simulation import stop_simulation

        stopped = stop_simulation(settings, backend)
    if as_json:
        emit_json({"removed": removed, "scripted_model_stopped": stopped})
        return
    typer.echo(f"removed {len(removed)} workers" + (f": {', '.join(removed)}" if removed else ""))
    if stopped:
        typer.echo("stopped the scripted model")


@app.command("doctor")
@handled
def doctor_command(
    ctx: typer.Context, simulate: SimulateOpt = False, as_json: JsonOpt = False
) -> None:
    """Check Docker, images, the volume, profiles and credentials; exit 3 if any fails."""
    settings = settings_of(ctx, simulate=simulate)
    checks = doctor(settings, simulate=settings.simulate)
    failed = [check for check in checks if not check.ok]
    if as_json:
        emit_json({"ok": not failed, "checks": [check.__dict__ for check in checks]})
    else:
        for check in checks:
            typer.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.message}")
    raise typer.Exit(EXIT_ENVIRONMENT if failed else EXIT_OK)


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
    push: Annotated[bool, typer.Option("--push", help="Push the integration branch.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Merge the tasks' branches into an integration branch, in dependency order."""
    try:
        from .merge import merge_tasks
    except ImportError as error:
        raise BadInput(f"merge is not available in this installation ({error}).") from error
    report = merge_tasks(
        settings_of(ctx).layout, repo_dir, ids or None, integration_branch=branch, push=push
    )
    if as_json:
        emit_json({**report.model_dump(mode="json"), "ok": report.ok})
    else:
        typer.echo(report.describe())
    raise typer.Exit(EXIT_OK if report.ok else EXIT_TASKS_FAILED)


# --- entry points --------------------------------------------------------------------------


spawn_worker_app = typer.Typer(
    add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)


@spawn_worker_app.command()
@handled
def spawn_worker(
    ctx: typer.Context,
    profile: Annotated[
        str, typer.Argument(metavar="PROFILE", help="Worker profile, e.g. default or flutter.")
    ],
    task_id: Annotated[
        str, typer.Argument(metavar="TASK_ID", help="The task to run (tasks/<id>.json).")
    ],
    root: Annotated[
        Path | None,
        typer.Option(
            "--root", help="Orchestration root (default $ORCHESTRATION_DIR or /orchestration)."
        ),
    ] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", metavar="NAME", help="docker (default) or local.")
    ] = None,
    volume: Annotated[
        str | None,
        typer.Option(
            "--volume", metavar="NAME|PATH", help="Volume name or host path workers mount."
        ),
    ] = None,
    network: Annotated[
        str | None, typer.Option("--network", metavar="NAME", help="Docker network for the worker.")
    ] = None,
    profiles: Annotated[
        Path | None, typer.Option("--profiles", metavar="FILE", help="Profiles file.")
    ] = None,
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


def _run(typer_app: typer.Typer, argv: Sequence[str] | None, prog: str) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        typer_app(args=list(argv) if argv is not None else None, prog_name=prog)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_BAD_INPUT)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``orchestrator``."""
    return _run(app, argv, "orchestrator")


def spawn_worker_main(argv: Sequence[str] | None = None) -> int:
    """``spawn-worker PROFILE TASK_ID``."""
    return _run(spawn_worker_app, argv, "spawn-worker")
