"""The planner as a task: a task of kind ``plan`` run by the dispatcher in an ordinary worker,
whose result carries the checked plan (see :mod:`manager.planning.planner`)."""

from __future__ import annotations

import hashlib

from orchestration_protocol import Layout, Task, TaskKind, read_task_state, utc_now, write_task

from ..errors import PlanFailed
from ..planning.planner import PLAN_TIMEOUT_S, PlanOutcome, planning_prompt
from ..tasks.create import checked_plan
from .dispatch import Dispatcher
from .spawn import SpawnContext


def _planning_id(layout: Layout, request: str) -> str:
    digest = hashlib.sha1(request.encode()).hexdigest()[:6]
    number = 1
    while layout.task_file(f"plan-{digest}-{number}").exists():
        number += 1
    return f"plan-{digest}-{number}"


def plan_in_worker(
    context: SpawnContext, request: str, executors: int, repo_url: str | None,
    *, profile: str | None = None, timeout_s: float = PLAN_TIMEOUT_S,
) -> PlanOutcome:
    """Run a planning task in a worker, wait for it, return its checked plan."""
    layout = context.settings.layout
    layout.ensure()
    task = write_task(layout, Task(
        id=_planning_id(layout, request),
        prompt=planning_prompt(request, executors),
        kind=TaskKind.PLAN,
        repo=repo_url,
        profile=profile,
        timeout_s=timeout_s,
    ))
    dispatcher = Dispatcher(context, max_workers=1, scope=[task.id], profile=profile)
    dispatcher.run(until_settled=True)
    dispatcher.wait_for_workers()
    snapshot, state = read_task_state(layout, task.id, now=utc_now())
    result = snapshot.current_result
    if result is None or result.plan is None:
        why = (result.error if result else None) or f"it ended {state.value}"
        raise PlanFailed(
            f"The planner (task {task.id}) gave no plan: {why}; see 'orchestrator logs {task.id}'."
        )
    return PlanOutcome(checked_plan(result.plan, f"task {task.id}"), task.id, result.cost_usd)
