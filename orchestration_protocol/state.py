"""The one derivation of a task's state from the files on the volume.

Every view (the CLI's status table, ``wait``, the dispatcher, a restarted manager) reads a
:class:`TaskSnapshot` per task and calls :func:`derive_state`; nothing else decides what state a
task is in, and nothing else decides which attempt may be claimed next (:func:`next_attempt`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from .board_cache import FileCache, cache_for, save_cache
from .errors import InvalidFile, ProtocolError
from .files import read_model_if_exists
from .models import CancelRequest, Claim, Result, ResultStatus, Task, WorkerStatus
from .outcomes import RoundKind
from .paths import JSON_SUFFIX, Layout, is_hidden, task_id_from_filename, validate_task_id
from .rounds import ROUNDS_DIR, RoundRequest, read_rounds


class TaskState(StrEnum):
    """Where a task stands."""

    INVALID = "invalid"
    """Its task file cannot be used; see the snapshot's problems."""
    PENDING = "pending"
    """Waiting for a worker."""
    BLOCKED = "blocked"
    """Waiting for dependencies that have not succeeded."""
    RUNNING = "running"
    """Claimed, with a fresh lease."""
    LOST = "lost"
    """Claimed, but the lease expired, no result, and no live container."""
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @property
    def is_final(self) -> bool:
        """True for states that only a retry can change."""
        return self in FINAL_STATES

    @property
    def has_live_worker(self) -> bool:
        """A worker holds the claim with a fresh lease: a result is coming."""
        return self == TaskState.RUNNING

    @property
    def ended_unsuccessfully(self) -> bool:
        """The last attempt ended without success in a way another attempt may fix (failed,
        timed out, or lost with its worker)."""
        return self in (TaskState.FAILED, TaskState.TIMEOUT, TaskState.LOST)

    @property
    def may_start_attempt(self) -> bool:
        """A new attempt may be claimed in this state (given attempts left and no cancel:
        :func:`next_attempt` decides): pending, or ended unsuccessfully."""
        return self == TaskState.PENDING or self.ended_unsuccessfully

    @property
    def never_succeeds(self) -> bool:
        """Nothing but a retry by hand can make it succeed (invalid or cancelled)."""
        return self in (TaskState.INVALID, TaskState.CANCELLED)


FINAL_STATES = frozenset(
    {TaskState.SUCCESS, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMEOUT, TaskState.INVALID}
)
RETRYABLE_RESULTS = frozenset({ResultStatus.FAILED, ResultStatus.TIMEOUT})


@dataclass(frozen=True)
class TaskSnapshot:
    """Everything the volume says about one task, read at one moment."""

    task_id: str
    task: Task | None = None
    claim: Claim | None = None
    status: WorkerStatus | None = None
    result: Result | None = None
    cancel: CancelRequest | None = None
    rounds: tuple[RoundRequest, ...] = ()
    """The later rounds the manager asked for (``rounds/<id>/<n>.json``), by number."""
    problems: tuple[ProtocolError, ...] = ()

    @property
    def repairs_requested(self) -> int:
        """How many repair rounds were asked for (a resolver's own round is not a repair)."""
        return sum(1 for request in self.rounds if request.kind == RoundKind.REPAIR)

    @property
    def attempt_allowance(self) -> int:
        """How many attempts the task may have: ``max_attempts`` runs, plus one attempt per
        round the manager asked for (a round is never paid for out of the retries)."""
        return (self.task.max_attempts if self.task else 0) + len(self.rounds)

    @property
    def failed_its_check(self) -> bool:
        """The latest attempt ran and failed because its check did not pass."""
        result = self.current_result
        return (
            result is not None
            and result.status == ResultStatus.FAILED
            and result.check is not None
            and not result.check.passed
        )

    def round_for(self, attempt: int) -> RoundRequest | None:
        """The round request that attempt ``attempt`` runs, or None (a first run or a retry)."""
        for request in self.rounds:  # most tasks have none: no generator made for them
            if request.attempt == attempt:
                return request
        return None

    @property
    def attempt(self) -> int:
        """The latest attempt made (0 when never claimed)."""
        claimed = self.claim.attempt if self.claim else 0
        finished = self.result.attempt if self.result else 0
        return max(claimed, finished)

    @property
    def current_result(self) -> Result | None:
        """The result, unless a later attempt has been claimed since it was written."""
        if self.result is None:
            return None
        if self.claim is not None and self.claim.attempt > self.result.attempt:
            return None
        return self.result

    @property
    def current_status(self) -> WorkerStatus | None:
        """The heartbeat of the claim holder; a status from an older attempt is ignored."""
        if self.status is None or self.claim is None:
            return None
        return self.status if self.status.attempt == self.claim.attempt else None


def lease_expires_at(snapshot: TaskSnapshot) -> datetime | None:
    """When the current claim's lease runs out (None when unclaimed)."""
    if snapshot.claim is None:
        return None
    status = snapshot.current_status
    if status is not None:
        return status.lease_expires_at
    return snapshot.claim.claimed_at + timedelta(seconds=snapshot.claim.lease_s)


def derive_state(
    snapshot: TaskSnapshot,
    *,
    now: datetime,
    dependency_states: Mapping[str, TaskState] | None = None,
    container_alive: bool | None = None,
) -> TaskState:
    """The task's state. ``container_alive`` is None when no container engine was asked."""
    if snapshot.task is None:
        return TaskState.INVALID
    result = snapshot.current_result
    if result is not None:
        if snapshot.round_for(result.attempt + 1) is not None and snapshot.cancel is None:
            return TaskState.PENDING  # the manager asked for another round: it waits for it
        return TaskState(result.status.value)
    if snapshot.claim is not None:
        expires = lease_expires_at(snapshot)
        if (expires is not None and expires > now) or container_alive:
            return TaskState.RUNNING
        return TaskState.LOST
    states = dependency_states or {}
    if any(states.get(dep) != TaskState.SUCCESS for dep in snapshot.task.depends_on):
        return TaskState.BLOCKED
    return TaskState.PENDING


def next_attempt(snapshot: TaskSnapshot, state: TaskState, *, force: bool = False) -> int | None:
    """The attempt that may be claimed now, or None. ``force`` ignores ``max_attempts``. The
    allowance is ``max_attempts`` plus one per round the manager asked for; a failing check is
    followed only by such a round, never by a plain retry."""
    if snapshot.task is None or (snapshot.cancel is not None and not force):
        return None
    if state == TaskState.PENDING:
        return snapshot.attempt + 1
    if not (state.ended_unsuccessfully or (force and state == TaskState.CANCELLED)):
        return None
    if snapshot.failed_its_check and not force:
        return None  # only a repair round (the manager's) follows a failing check, no retry
    if force or snapshot.attempt < snapshot.attempt_allowance:
        return snapshot.attempt + 1
    return None


def latest_claim_attempt(layout: Layout, task_id: str) -> int:
    """The highest attempt claimed for a task (0 when never claimed)."""
    try:
        names = os.listdir(layout.claim_dir(task_id))
    except FileNotFoundError:
        return 0
    attempts = [
        int(name[: -len(JSON_SUFFIX)])
        for name in names
        if name.endswith(JSON_SUFFIX) and name[: -len(JSON_SUFFIX)].isdigit()
    ]
    return max(attempts, default=0)


def _read_part(read: Callable[[], object], problems: list[ProtocolError]) -> object | None:
    try:
        return read()
    except InvalidFile as error:
        problems.append(error)
        return None


def read_snapshot(
    layout: Layout,
    task_id: str,
    cache: FileCache | None = None,
    listing: BoardListing | None = None,
) -> TaskSnapshot:
    """Read every file about one task; unreadable parts become problems, never exceptions.
    With a ``cache``, a file whose signature is unchanged is not read again; a ``listing`` (what
    a board lists once) spares a look at the files a task does not have."""
    if cache is not None:
        return _cached_snapshot(layout, task_id, cache, listing)
    problems: list[ProtocolError] = []
    read = read_model_if_exists
    task = _read_part(lambda: read(layout.task_file(task_id), Task, task_id), problems)
    attempt = latest_claim_attempt(layout, task_id)
    claim = None
    if attempt:
        claim = _read_part(
            lambda: read(layout.claim_file(task_id, attempt), Claim, task_id), problems
        )
    status = _read_part(lambda: read(layout.status_file(task_id), WorkerStatus, task_id), problems)
    result = _read_part(lambda: read(layout.result_file(task_id), Result, task_id), problems)
    cancel = _read_part(lambda: read(layout.cancel_file(task_id), CancelRequest, task_id), problems)
    rounds, round_problems = read_rounds(layout, task_id)
    problems.extend(round_problems)
    return _snapshot(task_id, task, claim, status, result, cancel, rounds, problems)


@dataclass(frozen=True)
class BoardListing:
    """The names in each per-task directory of the root, listed once for a whole board: a task
    that has no claim, heartbeat, result, cancel request or rounds is not looked for there
    (half the tasks of a large root are pending, and each look that fails costs an exception)."""

    claims: frozenset[str]
    """``claims/``: a folder per claimed task."""
    status: frozenset[str]
    """``status/``: ``<id>.json`` per heartbeat."""
    results: frozenset[str]
    """``results/``: ``<id>.json`` per result (and ``<id>/`` folders beside them)."""
    control: frozenset[str]
    """``control/``: ``<id>.cancel`` per cancel request."""
    rounds: frozenset[str]
    """``rounds/``: a folder per task that was asked for another round."""

    @classmethod
    def of(cls, layout: Layout) -> BoardListing:
        return cls(
            claims=directory_names(layout.claims_dir),
            status=directory_names(layout.status_dir),
            results=directory_names(layout.results_dir),
            control=directory_names(layout.control_dir),
            rounds=directory_names(layout.root / ROUNDS_DIR),
        )


def directory_names(directory: Path) -> frozenset[str]:
    """The names in ``directory``; none when it is missing or not a directory."""
    try:
        return frozenset(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()


def _cached_snapshot(
    layout: Layout, task_id: str, cache: FileCache, listing: BoardListing | None = None
) -> TaskSnapshot:
    """:func:`read_snapshot` through ``cache``, with the paths as strings (a board of 10,000
    tasks made 135,000 ``Path`` objects, most of its time)."""
    validate_task_id(task_id)
    root = str(layout.root)
    problems: list[ProtocolError] = []
    read = cache.model

    def part(relative: str, model: type[Any], listed: frozenset[str] | None = None) -> Any:
        """The model of ``root/relative``; None without a look when ``listed`` (its directory's
        names) does not name it."""
        if listed is not None and relative.rpartition("/")[2] not in listed:
            return None
        return _read_part(lambda: read(f"{root}/{relative}", model, task_id), problems)

    task = part(f"tasks/{task_id}{JSON_SUFFIX}", Task)
    claimed = listing is None or task_id in listing.claims
    attempt = cache.latest_attempt(f"{root}/claims/{task_id}") if claimed else 0
    claim = part(f"claims/{task_id}/{attempt}{JSON_SUFFIX}", Claim) if attempt else None
    status = part(f"status/{task_id}{JSON_SUFFIX}", WorkerStatus, listing.status if listing else None)
    result = part(f"results/{task_id}{JSON_SUFFIX}", Result, listing.results if listing else None)
    cancel = part(f"control/{task_id}.cancel", CancelRequest, listing.control if listing else None)
    rounds: list[RoundRequest] = []
    if listing is None or task_id in listing.rounds:
        rounds, round_problems = read_rounds(layout, task_id)
        problems.extend(round_problems)
    return _snapshot(task_id, task, claim, status, result, cancel, rounds, problems)


def _snapshot(
    task_id: str,
    task: object,
    claim: object,
    status: object,
    result: object,
    cancel: object,
    rounds: list[RoundRequest],
    problems: list[ProtocolError],
) -> TaskSnapshot:
    return TaskSnapshot(
        task_id=task_id,
        task=task if isinstance(task, Task) else None,
        claim=claim if isinstance(claim, Claim) else None,
        status=status if isinstance(status, WorkerStatus) else None,
        result=result if isinstance(result, Result) else None,
        cancel=cancel if isinstance(cancel, CancelRequest) else None,
        rounds=tuple(rounds),
        problems=tuple(problems),
    )


def read_task_state(
    layout: Layout, task_id: str, *, now: datetime, container_alive: bool | None = None
) -> tuple[TaskSnapshot, TaskState]:
    """One task's snapshot and state, reading only its own files and its dependencies'."""
    snapshot = read_snapshot(layout, task_id)
    deps = snapshot.task.depends_on if snapshot.task else []
    dependency_states = {
        dep: derive_state(read_snapshot(layout, dep), now=now)
        if _task_exists(layout, dep)
        else TaskState.BLOCKED
        for dep in deps
    }
    state = derive_state(
        snapshot, now=now, dependency_states=dependency_states, container_alive=container_alive
    )
    return snapshot, state


def _task_exists(layout: Layout, task_id: str) -> bool:
    return os.path.lexists(layout.task_file(task_id))


@dataclass
class Board:
    """A snapshot of the whole volume: every task, plus files that could not be matched to one."""

    snapshots: dict[str, TaskSnapshot] = field(default_factory=dict)
    """Per task id, its snapshot (tasks whose file is invalid included)."""
    stray_files: list[ProtocolError] = field(default_factory=list)
    """Files in tasks/ whose names are not ``<valid id>.json``."""

    def states(
        self, *, now: datetime, container_alive: Mapping[str, bool] | None = None
    ) -> dict[str, TaskState]:
        """The state of every task, dependencies resolved (a cycle leaves its tasks blocked)."""
        alive = container_alive or {}
        states: dict[str, TaskState] = {}
        visiting: set[str] = set()

        def state_of(task_id: str) -> TaskState:
            if task_id in states:
                return states[task_id]
            snapshot = self.snapshots.get(task_id)
            if snapshot is None or task_id in visiting:
                return TaskState.BLOCKED
            visiting.add(task_id)
            deps = snapshot.task.depends_on if snapshot.task else []
            dependency_states = {dep: state_of(dep) for dep in deps}
            visiting.discard(task_id)
            states[task_id] = derive_state(
                snapshot,
                now=now,
                dependency_states=dependency_states,
                container_alive=alive.get(task_id),
            )
            return states[task_id]

        for task_id in self.snapshots:
            state_of(task_id)
        return states


def read_board(layout: Layout, *, cached: bool = True) -> Board:
    """Read every task on the volume. ``cached``: through this process's cache of the root
    (``board_cache``: every file's signature checked, only changed files read), saved for the
    next process in the user's cache directory."""
    cache = cache_for(layout.root) if cached else None
    board = _read_board(layout, cache)
    save_cache(layout.root)
    return board


def _read_board(layout: Layout, cache: FileCache | None) -> Board:
    board = Board()
    try:
        names = sorted(os.listdir(layout.tasks_dir))
    except FileNotFoundError:
        return board
    listing = BoardListing.of(layout)
    for name in names:
        if is_hidden(name):
            continue
        task_id = task_id_from_filename(name)
        if task_id is None:
            board.stray_files.append(stray_file(layout, name))
            continue
        board.snapshots[task_id] = read_snapshot(layout, task_id, cache, listing)
    return board


def stray_file(layout: Layout, name: str) -> InvalidFile:
    """The problem of a file in ``tasks/`` whose name is not ``<valid id>.json``."""
    path = layout.tasks_dir / name
    return InvalidFile(f"{path} is not named <id>.json with a valid id; rename or remove it.", path)
