"""Recovery: every attempt ends in a result, even when its worker cannot write one.

A worker that ended without a result (``docker kill``, OOM, a crash before or after claiming)
and a worker whose heartbeat went stale get a ``failed`` result written by the manager, with the
exit code and the last lines of the worker's output. The result is published through a
:class:`ClaimHandle` of the attempt's own claim, so fencing makes it safe against a worker that
comes back, and the protocol's :func:`next_attempt` then retries while ``max_attempts`` allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from orchestration_protocol import (
    ClaimHandle,
    ClaimLost,
    Layout,
    Result,
    ResultStatus,
    TaskSnapshot,
    lease_expires_at,
    next_attempt,
    read_snapshot,
    read_task_state,
    try_claim_attempt,
    utc_now,
)
from orchestration_protocol.contract import WorkerExit

from ..backends import Backend, ExitInfo, WorkerRecord
from ..credentials import redact

MANAGER_ID = "manager"
LOG_TAIL_LINES = 40
SIGNAL_NAMES = {137: "SIGKILL", 143: "SIGTERM", 139: "SIGSEGV", 134: "SIGABRT"}


@dataclass(frozen=True)
class Recovery:
    """A failed result the manager wrote for a worker that could not."""

    task_id: str
    attempt: int
    exit_code: int | None
    error: str


def describe_exit(name: str, info: ExitInfo) -> str:
    """One sentence on how a worker ended without a result."""
    code = info.exit_code
    if info.oom_killed:
        return f"Worker {name} ran out of memory and was killed (exit {code}) before writing a result; give its profile more memory."
    if code is None and info.error:
        return f"Worker {name} ended without a result ({info.error})."
    if code is None:
        return f"Worker {name} ended without a result and its exit code is unknown."
    if code in SIGNAL_NAMES:
        return f"Worker {name} was killed by {SIGNAL_NAMES[code]} (exit {code}) before writing a result."
    return f"Worker {name} exited with code {code} without writing a result."


def _log_tail(layout: Layout, backend: Backend, worker: str, task_id: str) -> str:
    text = backend.workers.logs(worker, tail=LOG_TAIL_LINES)
    if not text.strip():
        try:
            text = layout.log_file(task_id).read_text(errors="replace")
        except OSError:
            text = ""
    return "".join(text.splitlines(keepends=True)[-LOG_TAIL_LINES:])


def _failed_result(
    handle: ClaimHandle, error: str, exit_code: int | None, output: str, now: datetime
) -> Result:
    started = handle.claim.claimed_at
    return Result(
        task_id=handle.task_id,
        status=ResultStatus.FAILED,
        output=output,
        completed_at=now,
        error=error,
        exit_code=exit_code,
        attempt=handle.attempt,
        worker_id=MANAGER_ID,
        started_at=started,
        duration_s=max(0.0, (now - started).total_seconds()),
    )


def _handle_for_ended(
    layout: Layout, snapshot: TaskSnapshot, worker: WorkerRecord
) -> ClaimHandle | None:
    """The claim the ended worker held, or one the manager makes for an attempt that died
    before it could claim (so the attempt counts and a poison task stops)."""
    attempt = worker.attempt
    claim = snapshot.claim
    if claim is not None and (attempt is None or claim.attempt == attempt):
        return ClaimHandle(layout, claim) if snapshot.current_result is None else None
    if attempt is None or (claim is not None and claim.attempt > attempt):
        return None
    if not worker.started or worker.exit_code in (WorkerExit.OK, WorkerExit.NOTHING_TO_CLAIM):
        return None
    _, state = read_task_state(layout, snapshot.task_id, now=utc_now())
    if next_attempt(snapshot, state) != attempt:
        return None
    return try_claim_attempt(layout, snapshot.task_id, attempt, worker_id=MANAGER_ID)


def recover_ended_worker(
    layout: Layout, backend: Backend, worker: WorkerRecord, secrets: dict[str, str]
) -> Recovery | None:
    """If ``worker`` ended without its attempt's result, write a failed one; else None."""
    snapshot = read_snapshot(layout, worker.task_id)
    if snapshot.task is None:
        return None
    result = snapshot.result
    if result is not None and worker.attempt is not None and result.attempt >= worker.attempt:
        return None
    info = backend.workers.exit_info(worker.name)
    if info.exit_code is None and worker.exit_code is not None:
        info = ExitInfo(exit_code=worker.exit_code, oom_killed=info.oom_killed)
    if WorkerExit.NOTHING_TO_CLAIM in (worker.exit_code, info.exit_code):
        return None  # it claimed nothing: the claim, if any, is another worker's (a pool's)
    handle = _handle_for_ended(layout, snapshot, worker)
    if handle is None:
        return None
    error = describe_exit(worker.name, info)
    output = redact(_log_tail(layout, backend, worker.name, worker.task_id), secrets)
    return _publish(handle, error, info.exit_code, output)


def recover_lost_task(
    layout: Layout, backend: Backend, snapshot: TaskSnapshot, secrets: dict[str, str]
) -> Recovery | None:
    """A claim whose lease expired with no live worker: write its failed result."""
    if snapshot.claim is None or snapshot.current_result is not None:
        return None
    expired = lease_expires_at(snapshot)
    worker = snapshot.claim.worker_id
    error = (
        f"Worker {worker} stopped heartbeating (lease expired at "
        f"{expired.isoformat(timespec='seconds') if expired else '?'}) and left no result."
    )
    output = redact(_log_tail(layout, backend, worker, snapshot.task_id), secrets)
    return _publish(ClaimHandle(layout, snapshot.claim), error, None, output)


def _publish(
    handle: ClaimHandle, error: str, exit_code: int | None, output: str
) -> Recovery | None:
    try:
        handle.publish_result(_failed_result(handle, error, exit_code, output, utc_now()))
    except ClaimLost:
        return None  # the worker, or a successor, got there first
    return Recovery(handle.task_id, handle.attempt, exit_code, error)


def fail_unstartable(layout: Layout, task_id: str, attempt: int, error: str) -> Recovery | None:
    """A task whose worker cannot even be started (unknown profile, image missing): its attempt
    ends failed with the reason, so the queue moves on and the task never half-runs."""
    handle = try_claim_attempt(layout, task_id, attempt, worker_id=MANAGER_ID)
    if handle is None:
        return None
    return _publish(handle, error, None, "")
