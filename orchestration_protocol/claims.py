"""Claiming a task attempt exactly once, holding it with a lease, and writing under it.

A claim is ``claims/<id>/<attempt>.json``, created with ``link(2)``: of any number of racing
workers (on one host or many sharing NFS) exactly one creates it. The holder renews its lease by
rewriting ``status/<id>.json``. Once the lease has expired (and the container, where one is known,
is gone) anyone may claim ``attempt + 1``. Every write a holder makes is fenced: it is refused with
:class:`ClaimLost` once a later attempt exists, and results are create-once, so a worker paused
past its lease can never overwrite its successor's work.
"""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from .errors import ClaimLost, InvalidFile, SchemaViolation, TaskNotFound
from .files import atomic_write_bytes, create_exclusive, read_model_if_exists
from .models import CancelRequest, Claim, Result, ResultStatus, WorkerPhase, WorkerStatus, utc_now
from .paths import Layout
from .state import TaskState, latest_claim_attempt, next_attempt, read_task_state

DEFAULT_LEASE_S = 30.0


def default_worker_id() -> str:
    """``<hostname>:<pid>``: unique among live processes sharing a volume."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ClaimHandle:
    """A held claim on one attempt of one task: heartbeat, check for cancel, publish the result."""

    def __init__(self, layout: Layout, claim: Claim) -> None:
        self.layout = layout
        self.claim = claim

    @property
    def task_id(self) -> str:
        return self.claim.task_id

    @property
    def attempt(self) -> int:
        return self.claim.attempt

    def is_current(self) -> bool:
        """True while no later attempt has been claimed."""
        return latest_claim_attempt(self.layout, self.task_id) == self.attempt

    def ensure_current(self) -> None:
        """Raise :class:`ClaimLost` when a later attempt holds the task."""
        latest = latest_claim_attempt(self.layout, self.task_id)
        if latest != self.attempt:
            raise ClaimLost(
                f"Task {self.task_id} attempt {self.attempt} lost its claim to attempt {latest}; "
                "its writes are refused.",
                self.layout.claim_file(self.task_id, latest),
            )

    def heartbeat(
        self,
        phase: WorkerPhase,
        *,
        message: str | None = None,
        container: str | None = None,
        now: datetime | None = None,
    ) -> WorkerStatus:
        """Renew the lease by rewriting the status file; refused once the claim is lost."""
        now = now or utc_now()
        status = WorkerStatus(
            task_id=self.task_id,
            attempt=self.attempt,
            worker_id=self.claim.worker_id,
            phase=phase,
            started_at=self.claim.claimed_at,
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=self.claim.lease_s),
            message=message,
            container=container,
        )
        self.ensure_current()
        atomic_write_bytes(self.layout.status_file(self.task_id), status.to_json_bytes())
        return status

    def cancel_request(self) -> CancelRequest | None:
        """The pending cancel request for this task, if any (an unreadable one counts too)."""
        path = self.layout.cancel_file(self.task_id)
        try:
            return read_model_if_exists(path, CancelRequest, self.task_id)
        except InvalidFile:
            return CancelRequest(
                task_id=self.task_id, requested_at=utc_now(), reason=f"unreadable {path.name}"
            )

    def publish_result(self, result: Result) -> Result:
        """Write the attempt's result once; raise :class:`ClaimLost` if that is no longer ours."""
        result = validated_result(
            result.model_copy(
                update={
                    "task_id": self.task_id,
                    "attempt": self.attempt,
                    "worker_id": result.worker_id or self.claim.worker_id,
                }
            )
        )
        path = self.layout.result_file(self.task_id)
        data = result.to_json_bytes()
        for _ in range(5):
            self.ensure_current()
            if create_exclusive(path, data):
                return result
            try:
                existing = read_model_if_exists(path, Result, self.task_id)
            except InvalidFile:
                existing = None
                _move_aside(path, self.layout.artifacts_dir(self.task_id) / "corrupt-result.json")
                continue
            if existing is None:
                continue
            if existing.attempt >= self.attempt:
                raise ClaimLost(
                    f"Task {self.task_id} already has a result for attempt {existing.attempt}; "
                    f"attempt {self.attempt} may not replace it.",
                    path,
                )
            archive_result(self.layout, existing)
        raise ClaimLost(f"Task {self.task_id}: the result file kept changing; not written.", path)


def validated_result(result: Result) -> Result:
    """``result`` checked field by field (``model_copy`` does not validate): SchemaViolation
    naming the first bad field, so no reader ever meets a result it must reject."""
    try:
        return Result.model_validate(result.model_dump(warnings=False))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise SchemaViolation(
            f"The result of task {result.task_id} is invalid ({where}: {first['msg']}); "
            "it was not written.",
            None,
        ) from error


def _move_aside(path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, target)


def archive_result(layout: Layout, result: Result) -> None:
    """Move an earlier attempt's result to ``results/<id>/attempts/<n>.json`` before a retry."""
    _move_aside(
        layout.result_file(result.task_id),
        layout.archived_result_file(result.task_id, result.attempt),
    )


def attempt_result(layout: Layout, task_id: str, attempt: int) -> Result | None:
    """The result of ``attempt`` of the task, current or archived; None when it has none (or
    the file is unreadable: a view never fails on it)."""
    for path in (layout.result_file(task_id), layout.archived_result_file(task_id, attempt)):
        try:
            result = read_model_if_exists(path, Result, task_id)
        except (InvalidFile, OSError):
            continue
        if result is not None and result.attempt == attempt:
            return result
    return None


def try_claim_attempt(
    layout: Layout,
    task_id: str,
    attempt: int,
    *,
    worker_id: str,
    lease_s: float = DEFAULT_LEASE_S,
    now: datetime | None = None,
) -> ClaimHandle | None:
    """Create the claim for ``attempt``; None when another worker made it first."""
    if attempt > 1 and latest_claim_attempt(layout, task_id) < attempt - 1:
        return None
    now = now or utc_now()
    claim = Claim(
        task_id=task_id, attempt=attempt, worker_id=worker_id, claimed_at=now, lease_s=lease_s
    )
    layout.claim_dir(task_id).mkdir(parents=True, exist_ok=True)
    if not create_exclusive(layout.claim_file(task_id, attempt), claim.to_json_bytes()):
        return None
    return ClaimHandle(layout, claim)


def claim_task(
    layout: Layout,
    task_id: str,
    *,
    worker_id: str | None = None,
    lease_s: float = DEFAULT_LEASE_S,
    container_alive: bool | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> ClaimHandle | None:
    """Claim the next attempt of a task if its state allows one now; None otherwise.

    Allowed: a pending task (attempt 1), a lost one (lease expired, container gone) or a failed
    one with attempts left (``attempt + 1``); ``force`` retries regardless of ``max_attempts``.
    """
    now = now or utc_now()
    if not layout.task_file(task_id).exists():
        raise TaskNotFound(
            f"No task {task_id!r} in {layout.tasks_dir}; create it first.",
            layout.task_file(task_id),
        )
    snapshot, state = read_task_state(layout, task_id, now=now, container_alive=container_alive)
    attempt = next_attempt(snapshot, state, force=force)
    if attempt is None:
        return None
    handle = try_claim_attempt(
        layout,
        task_id,
        attempt,
        worker_id=worker_id or default_worker_id(),
        lease_s=lease_s,
        now=now,
    )
    if handle is not None and snapshot.result is not None and snapshot.result.attempt < attempt:
        archive_result(layout, snapshot.result)
    return handle


def request_cancel(layout: Layout, task_id: str, reason: str | None = None) -> TaskState:
    """Ask a task to stop. A task nobody has claimed is cancelled at once; return its state."""
    layout.task_file(task_id)  # validates the id
    request = CancelRequest(task_id=task_id, requested_at=utc_now(), reason=reason)
    atomic_write_bytes(layout.cancel_file(task_id), request.to_json_bytes())
    if not layout.task_file(task_id).exists():
        raise TaskNotFound(f"No task {task_id!r} to cancel.", layout.task_file(task_id))
    snapshot, state = read_task_state(layout, task_id, now=utc_now())
    if not state.is_final and not state.has_live_worker:  # nobody will see the request
        handle = try_claim_attempt(layout, task_id, snapshot.attempt + 1, worker_id="manager")
        if handle is not None:
            handle.publish_result(
                Result(
                    task_id=task_id,
                    status=ResultStatus.CANCELLED,
                    completed_at=utc_now(),
                    error=f"cancelled before it ran: {reason or 'cancel requested'}",
                    worker_id="manager",
                )
            )
            return TaskState.CANCELLED
    return state
