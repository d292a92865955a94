"""``orchestrator run --plan``: analyze -> plan -> execute -> aggregate.

:func:`repository_for` finds the repository (the configured one, else a new empty one in the
volume); :func:`make_plan` plans in a worker (or on this host); :func:`create_planned_tasks`
writes the plan's tasks (ids already on the volume get a number); the caller dispatches them;
:func:`aggregate` merges what succeeded into ``orchestrator/integration`` in the volume's mirror
and, with ``--output-dir``, exports the merged tree.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration_protocol import Layout, Plan, Task
from orchestration_protocol.mirrors import mirror_dir

from .backends import make_backend
from .credentials import MODEL_SECRETS
from .errors import BadInput
from .greenfield import create_greenfield, export_tree, greenfield_name, integrate
from .merge import MergeReport
from .mirror import ensure_mirror
from .plan import create_entries, task_entries
from .planning import PlanOutcome, local_planner_env, plan_in_worker, plan_locally
from .spawn import SpawnContext

EMPTY_REPOSITORY = "empty"
"""The greenfield repository ``orchestrator plan`` reads when no repository is given."""


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
