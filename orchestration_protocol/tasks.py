"""Writing and reading task files, and the JSON Schemas of every protocol file."""

from __future__ import annotations

from typing import Any

from .errors import InvalidFile, TaskNotFound
from .files import create_exclusive, read_model
from .models import CancelRequest, Claim, Result, Task, WorkerStatus, utc_now
from .paths import Layout
from .plans import plan_json_schema
from .rounds import RoundRequest

PROTOCOL_MODELS: dict[
    str, type[Task | Claim | WorkerStatus | Result | CancelRequest | RoundRequest]
] = {
    "task": Task,
    "claim": Claim,
    "status": WorkerStatus,
    "result": Result,
    "cancel": CancelRequest,
    "round": RoundRequest,
}


class TaskExists(InvalidFile):
    """A task file with that id is already on the volume; tasks are never rewritten."""


def write_task(layout: Layout, task: Task) -> Task:
    """Publish a new task file; refuse to replace one that exists."""
    if task.created_at is None:
        task = task.model_copy(update={"created_at": utc_now()})
    path = layout.task_file(task.id)
    layout.tasks_dir.mkdir(parents=True, exist_ok=True)
    if not create_exclusive(path, task.to_json_bytes()):
        raise TaskExists(f"Task {task.id!r} already exists at {path}; pick another id.", path)
    return task


def read_task(layout: Layout, task_id: str) -> Task:
    """The task with this id; TaskNotFound when absent, InvalidFile when unusable."""
    path = layout.task_file(task_id)
    try:
        return read_model(path, Task, task_id)
    except FileNotFoundError as error:
        raise TaskNotFound(f"No task {task_id!r} in {layout.tasks_dir}.", path) from error


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each protocol file, by kind."""
    schemas = {kind: model.model_json_schema() for kind, model in PROTOCOL_MODELS.items()}
    schemas["plan"] = plan_json_schema()
    return schemas
