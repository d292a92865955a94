"""Creating tasks: one from the command line, or many from a plan file (JSON or YAML).

A plan is a list of tasks, or ``{"tasks": [...]}``, each with the fields of a task file; ``id``
may be left out (``task-NNN`` is chosen) and ``retries: N`` stands for ``max_attempts: N + 1``.
Every task of a plan is validated (fields, ids, dependencies) before the first is written, so a
bad plan writes nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestration_protocol import Layout, Task, TaskExists, write_task

from .errors import BadInput, PlanInvalid

AUTO_ID = re.compile(r"^task-(\d+)\.json$")


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
    if isinstance(document, dict) and "tasks" in document:
        document = document["tasks"]
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        raise PlanInvalid(f"The plan {path} must be a list of tasks (or {{tasks: [...]}}).")
    return document


def create_plan(layout: Layout, path: Path, defaults: dict[str, Any] | None = None) -> list[Task]:
    """Validate every task of the plan, then write them all; return them in plan order."""
    entries = read_plan(path)
    layout.ensure()
    number = next_task_number(layout)
    tasks: list[Task] = []
    for index, entry in enumerate(entries, start=1):
        fields = {**(defaults or {}), **entry}
        if not fields.get("id"):
            fields["id"] = f"task-{number:03d}"
            number += 1
        try:
            tasks.append(build_task(fields, f"{path} task {index}"))
        except BadInput as error:
            raise PlanInvalid(str(error)) from error
    ids = [task.id for task in tasks]
    for task in tasks:
        if ids.count(task.id) > 1:
            raise PlanInvalid(f"{path}: the id {task.id!r} is used twice; make ids unique.")
        if layout.task_file(task.id).exists():
            raise PlanInvalid(f"{path}: task {task.id!r} already exists; pick another id.")
        for dep in task.depends_on:
            if dep not in ids and not layout.task_file(dep).exists():
                raise PlanInvalid(
                    f"{path}: task {task.id!r} depends on {dep!r}, which is neither in the plan "
                    "nor on the volume."
                )
    return [write_task(layout, task) for task in tasks]
