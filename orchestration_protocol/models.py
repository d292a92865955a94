"""The protocol's files as pydantic models: Task, Claim, WorkerStatus, Result, CancelRequest.

Every model forbids unknown fields and carries ``schema_version``; a version this code does not
speak is refused. Times are timezone-aware UTC. The smallest valid task is the seed's
``{"id": "task-001", "prompt": "..."}``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from .docstrings import describe_fields
from .outcomes import CheckOutcome, RoundReport
from .paths import validate_task_id

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})

TaskId = Annotated[str, AfterValidator(validate_task_id)]
SECRET_ENV_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL)", re.I)


def refuse_secret_names(env: dict[str, str], kind: str, fix: str) -> dict[str, str]:
    """``env`` unchanged, or ValueError naming a variable whose name looks like a secret."""
    for name in env:
        if SECRET_ENV_NAME.search(name):
            raise ValueError(
                f"env variable {name!r} looks like a secret; {kind} are plain files, so {fix}"
            )
    return env


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def _check_schema_version(version: int) -> int:
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise ValueError(
            f"schema_version {version} is not supported (this version speaks {supported}); "
            "upgrade claude-orchestrator"
        )
    return version


SchemaVersion = Annotated[int, AfterValidator(_check_schema_version)]


PRIORITY_LIMIT = 1_000_000
"""A task's priority runs from ``-PRIORITY_LIMIT`` to ``PRIORITY_LIMIT``."""


class ProtocolModel(BaseModel):
    """Common settings: unknown fields are errors, values are validated on assignment."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        json_schema_extra=describe_fields,  # docstrings read for a schema only (see docstrings)
        defer_build=True,  # built on first use: a process pays only for the models it uses
    )

    def to_json_bytes(self) -> bytes:
        """The model as the UTF-8 JSON that goes into its file."""
        return self.model_dump_json(indent=2, exclude_none=True).encode() + b"\n"


class AgentKind(StrEnum):
    """How a worker carries out a task's prompt."""

    CLAUDE = "claude"
    """The prompt goes to the headless Claude Code CLI."""
    COMMAND = "command"
    """The prompt is a shell command run in the clone (opt-in, needs no model)."""


class TaskKind(StrEnum):
    """What a task's worker hands back."""

    CHANGE = "change"
    """Changes to the repository: committed on ``orchestrator/<id>`` and merged later."""
    PLAN = "plan"
    """A plan (``orchestration_protocol.plans.Plan``) in the result: the agent reads the
    repository with Claude Code's structured output; nothing is committed or pushed."""
    CHECK = "check"
    """The check alone on ``branch`` (a task's branch or ``orchestrator/integration``), run as
    the agent's user; nothing is committed; the result's ``check`` holds the outcome."""
    RESOLVE = "resolve"
    """A merge conflict: ``branch`` checked out with ``merge_branch`` merged in, markers left in
    the tree for the agent; judged by git state and the check, not by what the agent says."""


MAX_CHECK_COMMANDS = 20
"""Most commands a check may have."""
DEFAULT_MAX_REPAIRS = 2
"""Repair rounds a task gets when neither it nor the manager's settings say."""


class Task(ProtocolModel):
    """``tasks/<id>.json``: one unit of work. Written once by the manager or a person."""

    id: TaskId
    """The task's id; must equal the file name without ``.json``."""
    prompt: str = Field(min_length=1)
    """What the agent is asked to do (for ``agent: command``, the shell command)."""
    profile: str | None = None
    """Worker profile (image and defaults) to run it with, e.g. ``flutter``; None for the default."""
    repo: str | None = None
    """Git URL to clone; None means the manager's configured repository."""
    branch: str | None = None
    """Branch to start from; None means the repository's configured branch."""
    depends_on: list[TaskId] = Field(default_factory=list)
    """Ids of tasks that must succeed before this one may start."""
    timeout_s: float | None = Field(default=None, gt=0)
    """Wall-clock limit for one attempt, in seconds; None means no limit."""
    max_attempts: int = Field(default=1, ge=1, le=100)
    """How many attempts may be made in all (1 means no retry)."""
    model: str | None = None
    """Model name passed to the agent; None means the agent's default."""
    agent: AgentKind = AgentKind.CLAUDE
    """Which agent runs the prompt."""
    kind: TaskKind = TaskKind.CHANGE
    """``change`` (the default) or ``plan`` (the prompt is a request to plan; see TaskKind)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Extra non-secret environment variables for the agent."""
    max_budget_usd: float | None = Field(default=None, gt=0)
    """Most this task may spend on model requests (all attempts), enforced by the gateway."""
    check: list[str] | None = Field(default=None, max_length=MAX_CHECK_COMMANDS)
    """Commands that check the work (run in order in the clone, as the agent's user); None: the
    repository's ``.orchestrator.yaml``, the profile's, or a detected default; ``[]``: no check."""
    check_timeout_s: float | None = Field(default=None, gt=0)
    """Wall-clock limit for the whole check, in seconds; None: the configured or default limit."""
    max_repairs: int | None = Field(default=None, ge=0, le=20)
    """How many repair rounds a failing check may get before the task ends ``failed``; None:
    the manager's setting (``DEFAULT_MAX_REPAIRS``). Unset fields stay out of the file, so a
    worker of an earlier version still reads the task."""
    merge_branch: str | None = Field(default=None, min_length=1, max_length=250)
    """For kind ``resolve``: the branch merged into ``branch`` whose conflicts the agent resolves."""
    # issue 17: the queue's order (see orchestration_protocol/priorities.py)
    priority: int | None = Field(default=None, ge=-PRIORITY_LIMIT, le=PRIORITY_LIMIT)
    """Higher starts first among ready tasks (ties: the older first); None counts as 0 and stays
    out of the file (a worker of an earlier version still reads it); ``priorities.csv`` in the
    root overrides it without rewriting this file."""
    created_at: datetime | None = None
    """When the task was written."""
    schema_version: SchemaVersion = SCHEMA_VERSION
    """Protocol version of this file."""

    @field_validator("env")
    @classmethod
    def _env_is_not_secret(cls, env: dict[str, str]) -> dict[str, str]:
        return refuse_secret_names(
            env, "tasks", "pass credentials to workers at run time (spawn options), never in a task"
        )

    @model_validator(mode="after")
    def _depends_on_others(self) -> Task:
        if self.id in self.depends_on:
            raise ValueError(f"task {self.id!r} depends on itself")
        if len(set(self.depends_on)) != len(self.depends_on):
            raise ValueError("depends_on lists a task twice")
        if self.kind == TaskKind.PLAN and self.agent != AgentKind.CLAUDE:
            raise ValueError("a plan task needs the claude agent")
        if (self.kind == TaskKind.RESOLVE) != (self.merge_branch is not None):
            raise ValueError("merge_branch is set for, and only for, a task of kind resolve")
        if any(not command.strip() for command in self.check or []):
            raise ValueError("check holds an empty command; remove it or write the command")
        return self


class Claim(ProtocolModel):
    """``claims/<id>/<attempt>.json``: who runs an attempt. Created exclusively, never rewritten."""

    task_id: TaskId
    """The claimed task."""
    attempt: int = Field(ge=1)
    """The attempt number this claim is for (1 for the first run)."""
    worker_id: str = Field(min_length=1, max_length=200)
    """Who holds the claim (container name, or host:pid)."""
    claimed_at: datetime
    """When the claim was made."""
    lease_s: float = Field(gt=0)
    """How long the claim stays valid without a heartbeat."""
    schema_version: SchemaVersion = SCHEMA_VERSION
    """Protocol version of this file."""


class WorkerPhase(StrEnum):
    """What a worker is doing now."""

    STARTING = "starting"
    CLONING = "cloning"
    RUNNING = "running"
    COMMITTING = "committing"
    PUBLISHING = "publishing"


class WorkerStatus(ProtocolModel):
    """``status/<id>.json``: the claim holder's heartbeat, rewritten while it works."""

    task_id: TaskId
    """The task being worked on."""
    attempt: int = Field(ge=1)
    """The attempt this status belongs to; ignored when a later attempt holds the claim."""
    worker_id: str = Field(min_length=1, max_length=200)
    """Who is working (same as the claim's worker_id)."""
    phase: WorkerPhase
    """What the worker is doing."""
    started_at: datetime
    """When this attempt started."""
    heartbeat_at: datetime
    """When this file was last written."""
    lease_expires_at: datetime
    """After this moment without a newer heartbeat the worker counts as lost."""
    message: str | None = Field(default=None, max_length=2000)
    """A short human-readable note on progress."""
    container: str | None = None
    """Container name, when the worker runs in one."""
    schema_version: SchemaVersion = SCHEMA_VERSION
    """Protocol version of this file."""


class ResultStatus(StrEnum):
    """How an attempt ended."""

    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


class Result(ProtocolModel):
    """``results/<id>.json``: how an attempt ended. Written once per attempt."""

    task_id: TaskId
    """The task this result is for."""
    status: ResultStatus
    """success, failed, cancelled or timeout."""
    output: str = ""
    """The agent's final text (or the command's output)."""
    completed_at: datetime
    """When the attempt ended."""
    error: str | None = None
    """What went wrong, in one sentence, when status is not success."""
    exit_code: int | None = None
    """Exit code of the agent process or container, when known."""
    attempt: int = Field(default=1, ge=1)
    """Which attempt this result belongs to."""
    worker_id: str | None = None
    """Who wrote it (a worker, or the manager for a lost worker)."""
    started_at: datetime | None = None
    """When the attempt started."""
    duration_s: float | None = Field(default=None, ge=0)
    """How long the attempt ran."""
    branch: str | None = None
    """The branch holding the task's commit, e.g. ``orchestrator/<id>``."""
    base_commit: str | None = None
    """The commit the work started from."""
    head_commit: str | None = None
    """The commit holding the work, when anything changed."""
    pushed: bool = False
    """Whether the branch reached the remote."""
    files_changed: list[str] = Field(default_factory=list)
    """Paths changed by the work, relative to the repository root."""
    insertions: int = Field(default=0, ge=0)
    """Lines added."""
    deletions: int = Field(default=0, ge=0)
    """Lines removed."""
    patch: str | None = None
    """Path of ``changes.patch`` relative to the orchestration root, when saved."""
    cost_usd: float | None = Field(default=None, ge=0)
    """What the agent reported the attempt cost."""
    usage: dict[str, JsonValue] | None = None
    """Token usage as the agent reported it."""
    num_turns: int | None = Field(default=None, ge=0)
    """Agent turns taken."""
    plan: dict[str, JsonValue] | None = None
    """A plan task's plan (the agent's structured output); untrusted: validate it as a Plan."""
    check: CheckOutcome | None = None
    """The check run at the end of this attempt (for kind ``check``, the whole result)."""
    round: RoundReport | None = None
    """Which round of the task this attempt was, what it changed, whether the check passes."""
    schema_version: SchemaVersion = SCHEMA_VERSION
    """Protocol version of this file."""


class CancelRequest(ProtocolModel):
    """``control/<id>.cancel``: asks the claim holder to stop."""

    task_id: TaskId
    """The task to cancel."""
    requested_at: datetime
    """When cancelling was asked for."""
    reason: str | None = Field(default=None, max_length=2000)
    """Why, for the result's error text."""
    schema_version: SchemaVersion = SCHEMA_VERSION
    """Protocol version of this file."""


FileKind = Literal["task", "status", "result", "cancel", "claim"]
