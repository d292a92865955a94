"""Creating tasks: one from the command line, or many from a plan file (JSON or YAML).

A plan file is either what ``orchestrator plan`` writes (a :class:`Plan`: tasks with titles,
owned files and dependencies, checked as a whole: cycles, unknown dependencies, duplicate ids,
two tasks owning one file), or a list of tasks, or ``{"tasks": [...]}``, each with the fields of
a task file; there ``id`` may be left out (``task-NNN`` is chosen) and ``retries: N`` stands for
``max_attempts: N + 1``. Every task is validated before the first is written, so a bad plan
writes nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestration_protocol import (
    Layout,
    Plan,
    Task,
    TaskExists,
    parse_plan,
    plan_problems,
    write_task,
)

from ..errors import BadInput, PlanInvalid

AUTO_ID = re.compile(r"^task-(\d+)\.json$")
PLAN_KEYS = frozenset({"request", "summary", "complexity", "executor_budget", "strategy", "notes"})
PLANNED_TASK_KEYS = frozenset({"title", "files"})


def next_task_number(layout: Layout) -> int:
    """One more than the highest ``task-NNN`` on the volume."""
    try:
        names = list(layout.tasks_dir.iterdir())
    except FileNotFoundError:
        return 1
    numbers = [int(m.group(1)) for path in names if (m := AUTO_ID.match(path.name))]
    return max(numbers, default=0) + 1


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "task"
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    return f"{where}: {message}"


def build_task(fields: dict[str, Any], where: str) -> Task:
    """A Task from loose fields (``retries`` allowed); BadInput naming ``where`` and the field."""
    fields = dict(fields)
    if "retries" in fields:
        retries = fields.pop("retries")
        if not isinstance(retries, int) or retries < 0:
            raise BadInput(f"{where}: retries must be a whole number of at least 0.")
        fields["max_attempts"] = retries + 1
    try:
        return Task.model_validate(fields)
    except ValidationError as error:
        raise BadInput(f"{where}: {_describe(error)}.") from error


def create_task(layout: Layout, fields: dict[str, Any]) -> Task:
    """Write one task; without an id it becomes the next free ``task-NNN``."""
    layout.ensure()
    if fields.get("id"):
        return write_task(layout, build_task(fields, f"task {fields['id']}"))
    number = next_task_number(layout)
    for _ in range(1000):
        task = build_task({**fields, "id": f"task-{number:03d}"}, "task")
        try:
            return write_task(layout, task)
        except TaskExists:
            number += 1
    raise BadInput(f"Could not find a free task id in {layout.tasks_dir}; give one with --id.")


def checked_plan(document: Any, source: str) -> Plan:
    """A plan from untrusted data, checked field by field and as a whole (PlanInvalid: the first
    problem, one sentence)."""
    try:
        plan = parse_plan(document)
    except ValueError as error:
        raise PlanInvalid(f"{source}: the plan is not valid ({error}).") from error
    problems = plan_problems(plan)
    if problems:
        raise PlanInvalid(f"{source}: {problems[0]}")
    return plan


def is_plan_document(document: Any) -> bool:
    """True for what ``orchestrator plan`` writes (rather than a bare list of task fields)."""
    if not isinstance(document, dict) or not isinstance(document.get("tasks"), list):
        return False
    tasks = [t for t in document["tasks"] if isinstance(t, dict)]
    return bool(PLAN_KEYS & document.keys()) or any(PLANNED_TASK_KEYS & t.keys() for t in tasks)


def task_entries(plan: Plan, repo_url: str | None = None) -> list[dict[str, Any]]:
    """The plan's tasks as task-file fields: a task with one dependency starts from that
    dependency's branch, so it builds on its code (and owning a file after it does not conflict)."""
    entries = []
    for planned in plan.tasks:
        entry: dict[str, Any] = {"id": planned.id, "prompt": planned.prompt,
                                 "depends_on": list(planned.depends_on)}
        if planned.profile:
            entry["profile"] = planned.profile
        if len(planned.depends_on) == 1:
            entry["branch"] = f"orchestrator/{planned.depends_on[0]}"
        if repo_url:
            entry["repo"] = repo_url
        entries.append(entry)
    return entries


def read_plan(path: Path) -> list[dict[str, Any]]:
    """The task entries of a plan file."""
    try:
        text = path.read_text()
    except OSError as error:
        raise PlanInvalid(
            f"The plan {path} cannot be read ({error.strerror}); check the path."
        ) from error
    try:
        document = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0]
        raise PlanInvalid(f"The plan {path} is not valid JSON/YAML ({reason}); fix it.") from error
    if is_plan_document(document):
        return task_entries(checked_plan(document, str(path)))
    if isinstance(document, dict) and "tasks" in document:
        document = document["tasks"]
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        raise PlanInvalid(f"The plan {path} must be a list of tasks (or {{tasks: [...]}}).")
    return document


def create_plan(
    layout: Layout, path: Path, defaults: dict[str, Any] | None = None, *, rename: bool = False
) -> list[Task]:
    """Validate every task of the plan file, then write them all; return them in plan order."""
    return create_entries(layout, read_plan(path), defaults, str(path), rename=rename)


def _renamed(layout: Layout, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``entries`` with each id already on the volume replaced by ``<id>-2``, ``-3``, ...
    (dependencies and branches that name it follow)."""
    taken = {str(e.get("id")) for e in entries}
    names: dict[str, str] = {}
    for entry in entries:
        old = entry.get("id")
        if not old or not layout.task_file(old).exists():
            continue
        number = 2
        while layout.task_file(f"{old}-{number}").exists() or f"{old}-{number}" in taken:
            number += 1
        names[old] = f"{old}-{number}"
        taken.add(names[old])
    if not names:
        return entries
    renamed = []
    for entry in entries:
        entry = dict(entry)
        entry["id"] = names.get(str(entry.get("id")), entry.get("id"))
        entry["depends_on"] = [names.get(d, d) for d in entry.get("depends_on") or []]
        branch = entry.get("branch")
        if isinstance(branch, str) and branch.startswith("orchestrator/"):
            entry["branch"] = "orchestrator/" + names.get(branch[13:], branch[13:])
        renamed.append(entry)
    return renamed


def create_entries(
    layout: Layout,
    entries: list[dict[str, Any]],
    defaults: dict[str, Any] | None = None,
    where: str = "the plan",
    *,
    rename: bool = False,
) -> list[Task]:
    """Validate every task, then write them all; ``rename``: ids already on the volume get a
    number (a second request does not collide with the first's tasks)."""
    layout.ensure()
    if rename:
        entries = _renamed(layout, entries)
    number = next_task_number(layout)
    tasks: list[Task] = []
    for index, entry in enumerate(entries, start=1):
        fields = {**(defaults or {}), **entry}
        if not fields.get("id"):
            fields["id"] = f"task-{number:03d}"
            number += 1
        try:
            tasks.append(build_task(fields, f"{where} task {index}"))
        except BadInput as error:
            raise PlanInvalid(str(error)) from error
    ids = [task.id for task in tasks]
    for task in tasks:
        if ids.count(task.id) > 1:
            raise PlanInvalid(f"{where}: the id {task.id!r} is used twice; make ids unique.")
        if layout.task_file(task.id).exists():
            raise PlanInvalid(
                f"{where}: task {task.id!r} already exists; pick another id (or --rename)."
            )
        for dep in task.depends_on:
            if dep not in ids and not layout.task_file(dep).exists():
                raise PlanInvalid(
                    f"{where}: task {task.id!r} depends on {dep!r}, which is neither in the plan "
                    "nor on the volume."
                )
    return [write_task(layout, task) for task in tasks]
