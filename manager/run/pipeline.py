"""``orchestrator run``'s whole flow: create the tasks (with ``--plan``: analyze -> plan), execute
them with the dispatcher, aggregate, and report (:func:`run_tasks`).

:func:`repository_for` finds the repository (the configured one, else a new empty one in the
volume); :func:`make_plan` plans in a worker (or on this host); :func:`create_planned_tasks`
writes the plan's tasks (ids already on the volume get a number); the caller dispatches them;
:func:`aggregate` merges what succeeded into ``orchestrator/integration`` in the volume's mirror
and, with ``--output-dir``, exports the merged tree.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration_protocol import Layout, Plan, Task, read_board, utc_now
from orchestration_protocol.mirrors import mirror_dir
from orchestration_views.ledger import ledger_cache
from orchestration_views.progress import Progress, assess
from orchestration_views.rows import status_rows

from ..backends import make_backend
from ..credentials import MODEL_SECRETS
from ..errors import BadInput
from ..git.check_config import applicable_check, describe_applicable
from ..git.greenfield import create_greenfield, export_tree, greenfield_name, integrate
from ..git.merge import MergeReport
from ..git.mirror import ensure_mirror
from ..planning.planner import (
    PlanOutcome,
    describe_plan,
    local_planner_env,
    plan_document,
    plan_locally,
)
from ..tasks.create import create_entries, create_plan, create_task, task_entries
from .check import check_lines
from .dispatch import Dispatcher, Tick
from .integration import LoopReport, close_the_loop
from .plan_task import plan_in_worker
from .spawn import SpawnContext

Say = Callable[[str], None]
"""Where the flow tells a person what it does, one line at a time."""

EMPTY_REPOSITORY = "empty"
"""The greenfield repository ``orchestrator plan`` reads when no repository is given."""
PLAN_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def quiet(_line: str) -> None:
    """Says nothing (``--json``)."""


@dataclass(frozen=True)
class Repository:
    """Where a run's tasks start from."""

    url: str
    """The URL (or, for a greenfield run, the path in the volume) the mirror is made from."""
    branch: str
    """The branch tasks start from."""
    greenfield: bool
    """True when it is a new, empty repository in the volume."""


def repository_for(context: SpawnContext, request: str, *, shared_empty: bool = False) -> Repository:
    """The configured repository, else a new empty one in the volume (``shared_empty``: the
    one empty repository ``plan`` reads, instead of a new one per run)."""
    settings = context.settings
    branch = settings.repo_branch or "main"
    if settings.repo_url:
        return Repository(settings.repo_url, branch, False)
    name = EMPTY_REPOSITORY if shared_empty else greenfield_name(request)
    return Repository(create_greenfield(settings.layout, name, branch), branch, True)


def make_plan(
    context: SpawnContext,
    request: str,
    executors: int,
    repository: Repository,
    *,
    local: bool = False,
    profile: str | None = None,
    model: str | None = None,
) -> PlanOutcome:
    """Plan ``request``: in a worker (default), or with ``local`` on this host; an executor
    budget above ``executors`` is brought down to it (with a note)."""
    if local:
        outcome = _plan_here(context, request, executors, repository, model)
    else:
        outcome = plan_in_worker(context, request, executors, repository.url, profile=profile)
    if outcome.plan.executor_budget > executors:
        note = (f"The planner asked for {outcome.plan.executor_budget} executors; "
                f"limited to {executors}.")
        outcome.plan = outcome.plan.model_copy(
            update={"executor_budget": executors, "notes": [*outcome.plan.notes, note]}
        )
    return outcome


def _plan_here(
    context: SpawnContext, request: str, executors: int, repository: Repository,
    model: str | None,
) -> PlanOutcome:
    mirror = ensure_mirror(context.settings.layout, repository.url, credentials=context.secrets)
    url = key = None
    if context.settings.simulate:
        # Claude Code on this host reaches the scripted model here: the local backend's own
        local = context.settings.model_copy(update={"backend": "local"}).engine_config()
        model_process = make_backend(local).services.start_scripted_model()
        url, key = model_process.upstream, model_process.credentials["ANTHROPIC_API_KEY"]
    env = local_planner_env(url, key)
    if not context.settings.simulate:
        env.update({k: v for k, v in context.secrets.items() if k in MODEL_SECRETS})
    return plan_locally(request, executors, mirror, env, model=model)


def create_planned_tasks(
    layout: Layout, plan: Plan, repository: Repository, defaults: dict[str, Any]
) -> list[Task]:
    """Write the plan's tasks (the repository named in each), renaming ids already used."""
    entries = task_entries(plan, repository.url)
    for entry in entries:
        entry.setdefault("branch", repository.branch)
    return create_entries(layout, entries, defaults, "the plan", rename=True)


@dataclass
class Aggregate:
    """What the run's merge gave."""

    merge: MergeReport
    output_dir: Path | None = None
    loop: LoopReport | None = None
    """The checks after the merge: conflicts resolved, the integration check, repairs."""


def aggregate(
    context: SpawnContext, repository: Repository, task_ids: list[str], output_dir: Path | None
) -> Aggregate:
    """Merge the tasks into ``orchestrator/integration`` (pushed into the volume's mirror) and
    export the merged tree to ``output_dir``."""
    layout = context.settings.layout
    if not mirror_dir(layout, repository.url).exists():
        raise BadInput(f"No mirror of {repository.url} in the volume; nothing was run there.")
    report, clone = integrate(layout, repository.url, task_ids, repository.branch)
    try:
        exported = export_tree(clone, output_dir) if output_dir is not None else None
    finally:
        shutil.rmtree(clone.parent, ignore_errors=True)
    return Aggregate(report, exported)


def plan_lines(outcome: PlanOutcome, saved: Path | None) -> list[str]:
    """A plan for people, with who made it, what it cost and where it was saved."""
    made = f"planned by task {outcome.task_id}" if outcome.task_id else "planned on this host"
    cost = f", ${outcome.cost_usd:.4f}" if outcome.cost_usd is not None else ""
    return [describe_plan(outcome.plan), f"({made}{cost})" + (f"; saved to {saved}" if saved else "")]


def planning_cost_line(outcome: PlanOutcome) -> str:
    cost = f"${outcome.cost_usd:.4f}" if outcome.cost_usd is not None else "unknown"
    return f"planning: {cost} ({outcome.task_id or 'on this host'})"


@dataclass(frozen=True)
class RunRequest:
    """What ``orchestrator run`` was asked to do."""

    prompts: list[str]
    """One task per prompt; with ``plan``, the words of the request (or one plan file)."""
    max_workers: int
    """Most workers at once; with ``plan``, also the most the planner may budget."""
    fields: dict[str, Any] = field(default_factory=dict)
    """The task fields every task gets (profile, agent, timeout, budget, repository...)."""
    plan: bool = False
    """Plan the request first, and merge what succeeded."""
    local: bool = False
    """With ``plan``: plan on this host, not in a worker."""
    output_dir: Path | None = None
    """Write the merged tree here."""
    profile: str | None = None
    """The worker profile (None: each task's own, else the default)."""

    @property
    def plan_file(self) -> Path | None:
        """The plan file to run, when the one prompt of a ``plan`` run is one."""
        if not self.plan or len(self.prompts) != 1:
            return None
        path = Path(self.prompts[0])
        return path if self.prompts[0].endswith(PLAN_FILE_SUFFIXES) and path.is_file() else None


@dataclass
class RunReport:
    """What a run did: a row per task, how they ended, and the plan and merge for ``--json``."""

    rows: list[dict[str, Any]]
    progress: Progress
    document: dict[str, Any]
    merged: bool
    """False when a merge conflict kept some work off the integration branch, or the
    integration branch's check failed."""


@dataclass
class _Created:
    tasks: list[Task]
    repository: Repository
    max_workers: int
    outcome: PlanOutcome | None = None


def _plan_and_create(context: SpawnContext, request: RunRequest, say: Say) -> _Created:
    """Analyze and plan, then write the plan's tasks."""
    text = " ".join(request.prompts)
    repository = repository_for(context, text)
    say(f"planning on {'a new empty repository in the volume' if repository.greenfield else repository.url} ...")
    outcome = make_plan(
        context, text, request.max_workers, repository, local=request.local, profile=request.profile
    )
    for line in plan_lines(outcome, None):
        say(line)
    tasks = create_planned_tasks(context.settings.layout, outcome.plan, repository, request.fields)
    return _Created(tasks, repository, min(request.max_workers, outcome.plan.executor_budget), outcome)


def create_run_tasks(context: SpawnContext, request: RunRequest, say: Say = quiet) -> _Created:
    """The run's tasks: planned, from a plan file, or one per prompt."""
    if request.plan and request.plan_file is None:
        return _plan_and_create(context, request, say)
    layout = context.settings.layout
    repository = repository_for(context, " ".join(request.prompts))
    fields = dict(request.fields)
    if repository.greenfield:
        fields["repo"] = repository.url
    if request.plan_file is not None:
        tasks = create_plan(layout, request.plan_file, fields, rename=True)
    else:
        tasks = [create_task(layout, {**fields, "prompt": prompt}) for prompt in request.prompts]
    return _Created(tasks, repository, request.max_workers)


def checked_aggregate(
    context: SpawnContext, repository: Repository, task_ids: list[str], output_dir: Path | None,
    max_workers: int, say: Say = quiet,
) -> Aggregate:
    """Merge into ``orchestrator/integration``, resolve conflicts, check the merge and send its
    failures back (:func:`close_the_loop`), then export the merged tree to ``output_dir``."""
    layout = context.settings.layout
    if not mirror_dir(layout, repository.url).exists():
        raise BadInput(f"No mirror of {repository.url} in the volume; nothing was run there.")
    loop, clone = close_the_loop(
        context, repository.url, repository.branch, task_ids, max_workers=max_workers, say=say
    )
    try:
        exported = export_tree(clone, output_dir) if output_dir is not None else None
    finally:
        shutil.rmtree(clone.parent, ignore_errors=True)
    return Aggregate(loop.merge, exported, loop)


def aggregate_run(
    context: SpawnContext, repository: Repository, tasks: list[Task], output_dir: Path | None,
    say: Say = quiet, max_workers: int = 4,
) -> Aggregate:
    """Merge what succeeded, check it, and export it, saying what was merged where."""
    result = checked_aggregate(
        context, repository, [task.id for task in tasks], output_dir, max_workers, say
    )
    say(f"merged into {result.merge.integration_branch} in the volume's mirror of {repository.url}:")
    for line in result.merge.describe().splitlines()[1:]:
        say(line.replace("pushed to origin/", "pushed as "))
    if result.output_dir is not None:
        say(f"merged tree written to {result.output_dir} (a git repository, branch main)")
    if result.loop is not None:
        for line in loop_lines(result.loop):
            say(line)
    return result


def loop_lines(loop: LoopReport) -> list[str]:
    """What the checks after the merge found, for people: "checks passed" only when they did."""
    said = {
        "passed": "integration check passed: checks passed",
        "failed": "integration check FAILED: not ready for review",
        "none": "integration check: no check applies (add 'check:' to .orchestrator.yaml)",
    }[loop.check_state]
    lines = [said]
    if loop.check is not None and loop.check.outcome is not None and not loop.check.passed:
        lines += [f"  {line}" for line in check_lines(loop.check)]
    lines += [f"repaired: {item}" for item in loop.repaired]
    return lines


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
    if result is not None and result.loop is not None:
        document["integration_check"] = result.loop.check.document() if result.loop.check else None
        document["checks"] = result.loop.check_state
        document["repaired"] = result.loop.repaired
    return document


def run_tasks(
    context: SpawnContext,
    request: RunRequest,
    *,
    say: Say = quiet,
    on_tick: Callable[[Tick], None] | None = None,
) -> RunReport:
    """Create the run's tasks, run them with up to ``max_workers`` workers until every one is
    settled, merge them when planned (or greenfield, or exported), and report."""
    created = create_run_tasks(context, request, say)
    ids = [task.id for task in created.tasks]
    say(f"created {', '.join(ids)}; running up to {created.max_workers} at once")
    if created.tasks:
        say(f"check: {describe_applicable(applicable_check(context.settings, created.tasks[0]))}")
    dispatcher = Dispatcher(
        context, max_workers=created.max_workers, scope=ids, profile=request.profile
    )
    dispatcher.run(until_settled=True, on_tick=on_tick)
    dispatcher.wait_for_workers()
    layout = context.settings.layout
    merged = None
    if request.plan or created.repository.greenfield or request.output_dir is not None:
        merged = aggregate_run(
            context, created.repository, created.tasks, request.output_dir, say,
            created.max_workers,
        )
    if created.outcome is not None:
        say(planning_cost_line(created.outcome))
    board = read_board(layout)  # repairs after the merge may have run tasks again
    states = board.states(now=utc_now())
    rows = status_rows(board, states, utc_now(), ids, ledger_cache(layout))
    document = run_document(created.outcome, merged)
    ok = merged is None or (merged.merge.ok and (merged.loop is None or merged.loop.check_state != "failed"))
    return RunReport(rows, assess(board, states, ids), document, ok)
