"""``rounds/<id>/<n>.json``: the manager asks for round ``n`` of a task (a repair or a resolve).

A task file is written once, so what a later round needs (the failing check, whether to resume
the task's session) goes into a round file of its own, written exclusively by the manager before
it re-queues the task; the attempt that runs the round reads it (see ``worker.session_store``
for the session and ``orchestration_protocol.repair_prompt`` for the prompt built from it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field

from .errors import InvalidFile
from .files import create_exclusive, read_model
from .models import SCHEMA_VERSION, ProtocolModel, SchemaVersion, TaskId
from .outcomes import CheckOutcome, RoundKind
from .paths import Layout, validate_task_id

ROUNDS_DIR = "rounds"
"""Directory of the volume holding round requests, one folder per task."""


class RoundRequest(ProtocolModel):
    """The manager's request for one more round of a task."""

    task_id: TaskId
    """The task to run again."""
    number: int = Field(ge=2, le=100)
    """Which round this is (the first run is round 1)."""
    attempt: int = Field(ge=1)
    """The attempt that runs this round (the claim's attempt number)."""
    kind: RoundKind
    """``repair`` (a failing check) or ``resolve`` (a merge conflict)."""
    failure: CheckOutcome | None = None
    """The failing check the agent is to fix (given to it as data, never as instructions)."""
    integration: bool = False
    """Whether the failure was seen on the integration branch rather than the task's own."""
    resume_session: bool = True
    """Whether to resume the task's saved Claude Code session (a fresh one when it is unusable)."""
    requested_at: datetime
    """When the manager asked for the round."""
    schema_version: SchemaVersion = SCHEMA_VERSION
    """Protocol version of this file."""


def round_file(layout: Layout, task_id: str, number: int) -> Path:
    """Where round ``number`` of ``task_id`` is requested."""
    return layout.root / ROUNDS_DIR / validate_task_id(task_id) / f"{number}.json"


def write_round(layout: Layout, request: RoundRequest) -> bool:
    """Publish a round request; False when that round was already requested."""
    path = round_file(layout, request.task_id, request.number)
    path.parent.mkdir(parents=True, exist_ok=True)
    return create_exclusive(path, request.to_json_bytes())


def read_rounds(layout: Layout, task_id: str) -> tuple[list[RoundRequest], list[InvalidFile]]:
    """Every round requested for ``task_id``, by number, and the round files that are unusable."""
    folder = layout.root / ROUNDS_DIR / validate_task_id(task_id)
    if not folder.is_dir():
        return [], []
    rounds, problems = [], []
    for path in sorted(folder.glob("*.json"), key=lambda p: (len(p.name), p.name)):
        try:
            rounds.append(read_model(path, RoundRequest, task_id))
        except InvalidFile as error:
            problems.append(error)
        except FileNotFoundError:
            continue
    return rounds, problems


def read_round_for_attempt(layout: Layout, task_id: str, attempt: int) -> RoundRequest | None:
    """The round request that names ``attempt``, or None (a plain run or retry)."""
    folder = layout.root / ROUNDS_DIR / validate_task_id(task_id)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.json")):
        request = read_model(path, RoundRequest, task_id)
        if request.attempt == attempt:
            return request
    return None


def rounds_requested(layout: Layout, task_id: str) -> list[int]:
    """The round numbers already requested for ``task_id`` (from the names of its files)."""
    folder = layout.root / ROUNDS_DIR / validate_task_id(task_id)
    if not folder.is_dir():
        return []
    return sorted(int(path.stem) for path in folder.glob("*.json") if path.stem.isdigit())


def request_repair(
    layout: Layout,
    task_id: str,
    attempt: int,
    failure: CheckOutcome,
    *,
    integration: bool = False,
    resume_session: bool = True,
) -> RoundRequest | None:
    """Ask for the task's next repair round, run by ``attempt`` (the claim number the next
    worker will take): the published request, or None when that round was asked for already.
    The caller counts rounds against ``max_repairs`` (``len(rounds_requested(...))``)."""
    number = max([1, *rounds_requested(layout, task_id)]) + 1
    request = RoundRequest(
        task_id=task_id, number=number, attempt=attempt, kind=RoundKind.REPAIR, failure=failure,
        integration=integration, resume_session=resume_session, requested_at=datetime.now(UTC),
    )
    return request if write_round(layout, request) else None
