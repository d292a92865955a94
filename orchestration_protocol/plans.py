"""Plans: what ``orchestrator plan`` returns and ``task create --plan`` / ``run --plan`` execute.

A plan is the structured output of a planning agent (headless Claude Code with ``--json-schema``
set to :func:`plan_json_schema`): tasks with self-contained prompts, the files each owns and
their dependencies, plus a complexity estimate, an executor budget, a strategy and notes. The
model checks each field; :func:`plan_problems` checks the plan as a whole, each problem one
sentence: a dependency cycle, an unknown dependency, a duplicate id, and two tasks owning the
same file (a predicted merge conflict, with the files).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field, ValidationError

from .models import SCHEMA_VERSION, ProtocolModel, SchemaVersion, TaskId

Complexity = Literal["low", "medium", "high"]
Strategy = Literal["parallel", "waves", "sequential"]


class PlannedTask(ProtocolModel):
    """One task of a plan."""

    id: TaskId
    """Short, meaningful id (``login-validation``); becomes the task's id."""
    title: str = Field(min_length=1, max_length=200)
    """One line a person reads in the plan."""
    prompt: str = Field(min_length=1)
    """Everything the worker needs, standing alone: goal, files, conventions, how to check."""
    files: list[str] = Field(default_factory=list)
    """Paths (relative to the repository root) this task creates or changes; no other task may
    own them."""
    depends_on: list[TaskId] = Field(default_factory=list)
    """Ids of tasks of this plan that must succeed first."""
    profile: str | None = None
    """Worker profile, when the task needs another image than the default."""


class Plan(ProtocolModel):
    """A plan for one request."""

    request: str = Field(default="", max_length=20_000)
    """The request that was planned."""
    summary: str = ""
    """How the work is split, in a sentence or two."""
    tasks: list[PlannedTask] = Field(min_length=1, max_length=50)
    """The tasks, in a sensible order (dependencies first)."""
    complexity: Complexity = "medium"
    """How big the request is: low, medium or high."""
    executor_budget: int = Field(default=1, ge=1, le=64)
    """How many workers are worth running at once for this plan."""
    strategy: Strategy = "parallel"
    """``parallel`` (no dependencies), ``waves`` (groups that wait for earlier groups) or
    ``sequential`` (a chain)."""
    notes: list[str] = Field(default_factory=list)
    """Risks, assumptions and what was left out, one per entry."""
    schema_version: SchemaVersion = SCHEMA_VERSION
    """Protocol version of this plan."""


def _inline_refs(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return _inline_refs(definitions[name], definitions)
        return {k: _inline_refs(v, definitions) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(item, definitions) for item in node]
    return node


def plan_json_schema() -> dict[str, Any]:
    """The plan's JSON Schema, self-contained (no ``$ref``), as Claude Code's ``--json-schema``
    and ``orchestrator schema plan`` give it."""
    schema = Plan.model_json_schema()
    inlined: dict[str, Any] = _inline_refs(schema, schema.get("$defs", {}))
    return inlined


def _cycle(tasks: dict[str, PlannedTask]) -> list[str] | None:
    """One dependency cycle (its ids, first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(task_id: str) -> list[str] | None:
        if task_id in path:
            return [*path[path.index(task_id) :], task_id]
        if task_id in done or task_id not in tasks:
            return None
        path.append(task_id)
        for dep in tasks[task_id].depends_on:
            found = visit(dep)
            if found:
                return found
        path.pop()
        done.add(task_id)
        return None

    for task_id in tasks:
        found = visit(task_id)
        if found:
            return found
    return None


def file_owners(plan: Plan) -> dict[str, list[str]]:
    """Each file some task owns, and the ids of the tasks that own it."""
    owners: dict[str, list[str]] = {}
    for task in plan.tasks:
        for path in dict.fromkeys(_normal(p) for p in task.files):
            owners.setdefault(path, []).append(task.id)
    return owners


def _normal(path: str) -> str:
    return path.strip().removeprefix("./").rstrip("/")


def _ancestors(plan: Plan) -> dict[str, set[str]]:
    """The tasks whose work each task starts from: a task with exactly one dependency starts
    from that dependency's branch (``task create --plan`` sets it), and so on up the chain; a
    task with several dependencies starts from the base branch."""
    direct = {task.id: list(task.depends_on) for task in plan.tasks}
    found: dict[str, set[str]] = {}
    for task_id in direct:
        chain: set[str] = set()
        current = direct[task_id]
        while len(current) == 1 and current[0] not in chain and current[0] != task_id:
            chain.add(current[0])
            current = direct.get(current[0], [])
        found[task_id] = chain
    return found


def predicted_conflicts(plan: Plan) -> dict[tuple[str, ...], list[str]]:
    """Tasks that own the same files without one building on the other's branch (their branches
    will conflict when merged): ids -> files."""
    ancestors = _ancestors(plan)
    conflicts: dict[tuple[str, ...], list[str]] = {}
    for path, ids in sorted(file_owners(plan).items()):
        clashing = [
            task_id
            for task_id in ids
            if any(
                other != task_id
                and task_id not in ancestors.get(other, set())
                and other not in ancestors.get(task_id, set())
                for other in ids
            )
        ]
        if len(clashing) > 1:
            conflicts.setdefault(tuple(clashing), []).append(path)
    return conflicts


def plan_problems(plan: Plan, known_ids: Iterable[str] = ()) -> list[str]:
    """Everything wrong with the plan as a whole, one sentence each; empty when it is sound.
    ``known_ids``: tasks outside the plan that a dependency may name (already on the volume)."""
    problems: list[str] = []
    ids = [task.id for task in plan.tasks]
    for task_id in dict.fromkeys(ids):
        if ids.count(task_id) > 1:
            problems.append(f"The id {task_id!r} is used by {ids.count(task_id)} tasks; make ids unique.")
    known = set(ids) | set(known_ids)
    for task in plan.tasks:
        for dep in task.depends_on:
            if dep not in known:
                problems.append(
                    f"Task {task.id!r} depends on {dep!r}, which is not a task of the plan; "
                    "fix the id or drop the dependency."
                )
    cycle = _cycle({task.id: task for task in plan.tasks})
    if cycle:
        problems.append(
            f"The dependencies form a cycle ({' -> '.join(cycle)}); remove one of them."
        )
    for owners, files in predicted_conflicts(plan).items():
        problems.append(
            f"Predicted merge conflict: tasks {', '.join(owners)} all own {', '.join(files)}; "
            "give each file to one task, or make one depend on the other alone."
        )
    return problems


def parse_plan(document: Any) -> Plan:
    """A :class:`Plan` from JSON data; ValueError naming the field when it is not one."""
    try:
        return Plan.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "plan"
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise ValueError(f"{where}: {message}") from error


def waves(plan: Plan) -> list[list[str]]:
    """The tasks in groups that can run together, each after the groups before it (a cycle's
    tasks are left out: see :func:`plan_problems`)."""
    remaining = {task.id: set(task.depends_on) & {t.id for t in plan.tasks} for task in plan.tasks}
    groups: list[list[str]] = []
    while remaining:
        ready = [task_id for task_id, deps in remaining.items() if not deps]
        if not ready:
            break
        groups.append(ready)
        for task_id in ready:
            del remaining[task_id]
        for deps in remaining.values():
            deps.difference_update(ready)
    return groups


# --- how a plan is asked for (the worker's planning task and `plan --local` alike) ----------

PLANNER_PROMPT = """\
You are the planner of claude-orchestrator, running headless in a container with no person to
ask. Your working directory is a fresh clone of the repository: read it (Read, Glob, Grep,
read-only commands such as git ls-files or git log) and change nothing; nothing you change is
kept. Split the request into tasks that parallel workers can do independently: each task owns
the files it creates or changes and no other task owns them (two tasks on one file conflict when
merged), each prompt stands alone (the worker sees nothing else: goal, files it owns, files it
must not touch, conventions with example paths, how to check), and a task depends on another
only when it builds on that task's code. Give a complexity estimate, how many workers are worth
running at once (never more than the request allows), the strategy and notes on risks. Return
the plan by calling the StructuredOutput tool once."""
PLANNER_DISALLOWED_TOOLS = ("Write", "Edit", "NotebookEdit", "MultiEdit")
"""A planner reads; the runtime keeps nothing it changes anyway (no commit, no push)."""
