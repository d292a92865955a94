"""The claude-orchestrator file protocol (version 1): models, paths, atomic files, claims,
state and the watcher. It needs only a shared filesystem: no Docker, no CLI.

Typical use by a worker::

    layout = Layout(root).ensure()
    handle = claim_task(layout, "task-001")
    if handle:
        handle.heartbeat(WorkerPhase.RUNNING)
        ...
        handle.publish_result(Result(task_id="task-001", status="success", ...))
"""

from typing import TYPE_CHECKING, Any

from .claims import (
    DEFAULT_LEASE_S,
    ClaimHandle,
    archive_result,
    claim_task,
    default_worker_id,
    request_cancel,
    try_claim_attempt,
)
from .errors import (
    ClaimLost,
    FileTooLarge,
    IdMismatch,
    InvalidFile,
    InvalidTaskId,
    ProtocolError,
    SchemaViolation,
    TaskNotFound,
    UnparsableFile,
    UnsafeFile,
    UnsupportedSchemaVersion,
)
from .files import (
    MAX_FILE_BYTES,
    atomic_write_bytes,
    create_exclusive,
    read_bytes_safely,
    read_model,
    read_model_if_exists,
)
from .models import (
    SCHEMA_VERSION,
    AgentKind,
    CancelRequest,
    Claim,
    Result,
    ResultStatus,
    Task,
    TaskKind,
    WorkerPhase,
    WorkerStatus,
    utc_now,
)
from .paths import Layout, default_root, is_valid_task_id, validate_task_id
from .plans import Plan, PlannedTask, parse_plan, plan_json_schema, plan_problems
from .state import (
    Board,
    TaskSnapshot,
    TaskState,
    derive_state,
    latest_claim_attempt,
    lease_expires_at,
    next_attempt,
    read_board,
    read_snapshot,
    read_task_state,
)
from .tasks import TaskExists, json_schemas, read_task, write_task

if TYPE_CHECKING:
    from .watcher import ProtocolEvent, ProtocolWatcher, default_polling

_LAZY = {"ProtocolEvent", "ProtocolWatcher", "default_polling"}
"""Imported on first use: the watcher brings watchdog, which a worker running one task never
needs (about 20 ms of CPU at every start)."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import watcher

        return getattr(watcher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_LEASE_S",
    "MAX_FILE_BYTES",
    "SCHEMA_VERSION",
    "AgentKind",
    "Board",
    "CancelRequest",
    "Claim",
    "ClaimHandle",
    "ClaimLost",
    "FileTooLarge",
    "IdMismatch",
    "InvalidFile",
    "InvalidTaskId",
    "Layout",
    "Plan",
    "PlannedTask",
    "ProtocolError",
    "ProtocolEvent",
    "ProtocolWatcher",
    "Result",
    "ResultStatus",
    "SchemaViolation",
    "Task",
    "TaskExists",
    "TaskKind",
    "TaskNotFound",
    "TaskSnapshot",
    "TaskState",
    "UnparsableFile",
    "UnsafeFile",
    "UnsupportedSchemaVersion",
    "WorkerPhase",
    "WorkerStatus",
    "archive_result",
    "atomic_write_bytes",
    "claim_task",
    "create_exclusive",
    "default_polling",
    "default_root",
    "default_worker_id",
    "derive_state",
    "is_valid_task_id",
    "json_schemas",
    "latest_claim_attempt",
    "lease_expires_at",
    "next_attempt",
    "parse_plan",
    "plan_json_schema",
    "plan_problems",
    "read_board",
    "read_bytes_safely",
    "read_model",
    "read_model_if_exists",
    "read_snapshot",
    "read_task",
    "read_task_state",
    "request_cancel",
    "try_claim_attempt",
    "utc_now",
    "validate_task_id",
    "write_task",
]
