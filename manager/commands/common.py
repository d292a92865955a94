"""What every command shares: the apps, the shared options, settings, error handling, and
the printers of progress."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from orchestration_protocol import ProtocolError, utc_now
from orchestration_protocol.gateway import write_fleet_budget
from orchestration_views.progress import Progress
from orchestration_views.rows import cost_lines, rows_total_cost

from ..config import ManagerSettings, resolve_settings
from ..errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TASKS_FAILED,
    BadInput,
    ManagerError,
)
from ..output import console, emit_json, emit_json_line, report_error
from ..views.table import status_table

if TYPE_CHECKING:  # the engines and the spawn path load only for the commands that spawn
    from ..backends import Backend
    from ..run.spawn import SpawnContext

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
AgentOpt = Annotated[
    str | None, typer.Option("--agent", metavar="KIND", help="claude (default) or command.")
]
AttemptTimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", metavar="SECONDS", help="Seconds per attempt.")
]
RetriesOpt = Annotated[
    int, typer.Option("--retries", metavar="N", min=0, help="Extra attempts after a failure.")
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", metavar="NAME", help="Model for the agent.")
]
BudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--budget",
        metavar="USD",
        help="Fleet budget: the most all tasks together may spend from now on, enforced by the "
        "gateway (default $ORCHESTRATOR_BUDGET_USD; unset leaves gateway/budget.json as it is).",
    ),
]
MaxBudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--max-budget",
        metavar="USD",
        help="The most one task may spend on model requests (all attempts), enforced by the "
        "gateway.",
    ),
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
    """The options every command shares (given before the command name), and the backends the
    command opened, which :func:`handled` closes when it ends."""

    root: Path | None = None
    backend: str | None = None
    volume: str | None = None
    network: str | None = None
    profiles: Path | None = None
    opened: list[Backend] = field(default_factory=list, compare=False, repr=False)

    def close(self) -> None:
        """Close every backend the command opened, the last first."""
        while self.opened:
            self.opened.pop().close()


RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root", help="Orchestration root (default $ORCHESTRATION_DIR or /orchestration)."
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="Where workers run: docker, swarm, slurm or local (default $ORCHESTRATOR_BACKEND or docker).",
    ),
]
VolumeOpt = Annotated[
    str | None,
    typer.Option(
        "--volume", help="What workers mount at /orchestration: a volume name or a host path."
    ),
]
NetworkOpt = Annotated[
    str | None, typer.Option("--network", metavar="NAME", help="Docker network for workers.")
]
ProfilesOpt = Annotated[
    Path | None,
    typer.Option(
        "--profiles",
        help="Profiles file (default $ORCHESTRATOR_PROFILES, <root>/profiles.yaml, ~/.config/claude-orchestrator/profiles.yaml).",
    ),
]


GLOBAL_OPTIONS = frozenset({"--root", "--backend", "--volume", "--network", "--profiles"})
"""The shared options (each takes a value); accepted before or after the command name."""


def hoist_global_options(argv: list[str]) -> list[str]:
    """``argv`` with shared options given after the command moved before it, so
    ``orchestrator status --root DIR`` means ``orchestrator --root DIR status`` (nothing after
    ``--`` is touched; an option given before the command wins over the same one after it)."""
    hoisted: list[str] = []
    rest: list[str] = []
    seen_command = False
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            rest.extend(argv[index:])
            break
        name = token.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            width = 1 if "=" in token else 2
            (hoisted if seen_command else rest).extend(argv[index : index + width])
            index += width
            continue
        if not token.startswith("-"):
            seen_command = True
        rest.append(token)
        index += 1
    return hoisted + rest


@app.callback()
def options(
    ctx: typer.Context,
    root: RootOpt = None,
    backend: BackendOpt = None,
    volume: VolumeOpt = None,
    network: NetworkOpt = None,
    profiles: ProfilesOpt = None,
) -> None:
    """Shared options."""
    os.umask(0)  # directories made here must be writable by workers running as another uid
    ctx.obj = Globals(root, backend, volume, network, profiles)


def settings_of(ctx: typer.Context, **extra: Any) -> ManagerSettings:
    """The command's settings: shared options, then the command's own."""
    given: Globals = ctx.obj or Globals()
    try:
        return resolve_settings(
            given.root,
            backend=given.backend,
            volume=given.volume,
            network=given.network,
            profiles_path=given.profiles,
            **extra,
        )
    except ValidationError as error:
        raise BadInput(f"Bad setting: {error.errors()[0]['msg']}.") from error


F = TypeVar("F", bound=Callable[..., Any])


def backend_for(ctx: typer.Context, settings: ManagerSettings) -> Backend:
    """The settings' backend, closed when the command ends."""
    from ..backends import make_backend

    if ctx.obj is None:
        ctx.obj = Globals()
    backend = make_backend(settings.engine_config())
    ctx.obj.opened.append(backend)
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
            ctx = kwargs.get("ctx")
            if isinstance(ctx, typer.Context) and isinstance(ctx.obj, Globals):
                ctx.obj.close()

    return wrapper  # type: ignore[return-value]


def finish(progress: Progress) -> None:
    raise typer.Exit(EXIT_OK if progress.succeeded else EXIT_TASKS_FAILED)


def spawning(ctx: typer.Context, **extra: Any) -> SpawnContext:
    from ..run.spawn import prepare_spawning

    settings = settings_of(ctx, **extra)
    return prepare_spawning(settings, backend_for(ctx, settings))


def set_fleet_budget(settings: ManagerSettings, as_json: bool) -> None:
    """Write the settings' fleet budget (counted from now) for the gateway, if one is given."""
    if settings.budget_usd is None:
        return
    budget = write_fleet_budget(settings.layout, settings.budget_usd)
    if not as_json:
        typer.echo(f"fleet budget: ${budget.usd:.2f} for every task together, counted from now")


def state_printer(as_json: bool) -> Callable[[dict[str, str]], None]:
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


def print_summary(
    view_rows: list[dict[str, Any]],
    progress: Progress,
    as_json: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    if as_json:
        emit_json(
            {
                "succeeded": progress.succeeded,
                "summary": progress.counts(),
                "total_cost_usd": rows_total_cost(view_rows),
                "tasks": view_rows,
                **(extra or {}),
            }
        )
        return
    console().print(status_table(view_rows))
    typer.echo(cost_lines(view_rows, None)[0])
    typer.echo(
        f"{progress.summary()}: " + ("all succeeded" if progress.succeeded else "not all succeeded")
    )


def interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def task_fields(prompt: str | None, **fields: Any) -> dict[str, Any]:
    """The task fields that were given (empty values left out)."""
    chosen = {key: value for key, value in fields.items() if value not in (None, [], {})}
    if prompt is not None:
        chosen["prompt"] = prompt
    return chosen
