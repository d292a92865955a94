"""Warm pools: idle workers that wait on the volume and claim a task the moment its file appears.

A pool worker is an ordinary worker started without a task. It files a record of itself, follows
``tasks/`` with the watcher, claims a task of its profile through the normal claim path (so of any
number of idle workers racing for one task exactly one wins) and then runs it as a cold-started
worker would. The files::

    pool/<pool>/manager.json         the pool's heartbeat, rewritten by ``orchestrator pool``; an
                                     idle worker whose pool stopped beating ends by itself
    pool/<pool>/workers/<name>.json  one record per pool worker: idle, or busy with the task and
                                     attempt it claimed (its claim names the same worker)

The busy record is how the manager finds the task of a pool worker's container (the container's
labels cannot say: it started before the task existed); the claim it names is checked too.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import Field

from .errors import InvalidFile
from .files import atomic_write_bytes, read_model_if_exists
from .models import ProtocolModel, SchemaVersion, Task, TaskId, utc_now
from .paths import JSON_SUFFIX, Layout, is_hidden, validate_task_id

POOLS_DIR = "pool"
DEFAULT_PROFILE = "default"
"""The profile of a task that names none."""
MANAGER_FILE = "manager.json"


def task_profile(task: Task) -> str:
    """The profile a task runs with when nobody overrides it."""
    return task.profile or DEFAULT_PROFILE


class PoolWorkerState(StrEnum):
    """What a pool worker is doing."""

    IDLE = "idle"
    """Waiting for a task; holds no claim and no caller token."""
    BUSY = "busy"
    """Holds the claim named in its record."""


class PoolWorker(ProtocolModel):
    """``pool/<pool>/workers/<name>.json``: one pool worker, written by that worker alone."""

    name: TaskId
    """The worker's name: its container's, and the ``worker_id`` of its claims."""
    pool: TaskId
    """The pool it belongs to."""
    profile: str = Field(min_length=1, max_length=64)
    """The profile of the tasks it takes."""
    state: PoolWorkerState
    """Idle, or busy with ``task_id``."""
    since: datetime
    """When it entered this state."""
    task_id: TaskId | None = None
    """The task it claimed (busy only)."""
    attempt: int | None = Field(default=None, ge=1)
    """The attempt it claimed (busy only)."""
    schema_version: SchemaVersion = 1
    """Protocol version of this file."""


class PoolHeartbeat(ProtocolModel):
    """``pool/<pool>/manager.json``: the pool's manager is alive and keeps ``size`` workers."""

    pool: TaskId
    """The pool's name."""
    profile: str = Field(min_length=1, max_length=64)
    """The profile its workers take."""
    size: int = Field(ge=0)
    """How many workers it keeps."""
    heartbeat_at: datetime
    """When this file was last written."""
    stale_after_s: float = Field(gt=0)
    """After this long without a newer heartbeat, idle workers of the pool end by themselves."""
    schema_version: SchemaVersion = 1
    """Protocol version of this file."""

    def is_stale(self, now: datetime | None = None) -> bool:
        return (now or utc_now()) - self.heartbeat_at > timedelta(seconds=self.stale_after_s)


def pools_dir(layout: Layout) -> Path:
    return layout.root / POOLS_DIR


def pool_dir(layout: Layout, pool: str) -> Path:
    return pools_dir(layout) / validate_task_id(pool)


def worker_record_file(layout: Layout, pool: str, name: str) -> Path:
    return pool_dir(layout, pool) / "workers" / f"{validate_task_id(name)}{JSON_SUFFIX}"


def heartbeat_file(layout: Layout, pool: str) -> Path:
    return pool_dir(layout, pool) / MANAGER_FILE


def write_pool_worker(layout: Layout, record: PoolWorker) -> PoolWorker:
    path = worker_record_file(layout, record.pool, record.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, record.to_json_bytes())
    return record


def remove_pool_worker(layout: Layout, pool: str, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        worker_record_file(layout, pool, name).unlink()


def read_pool_worker(layout: Layout, pool: str, name: str) -> PoolWorker | None:
    """One worker's record; None when absent or unreadable (written by workers: untrusted)."""
    try:
        record = read_model_if_exists(worker_record_file(layout, pool, name), PoolWorker)
    except InvalidFile:
        return None
    if record is None or record.pool != pool or record.name != name:
        return None
    return record


def _names(directory: Path) -> list[str]:
    try:
        return sorted(name for name in os.listdir(directory) if not is_hidden(name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_pool_workers(layout: Layout) -> list[PoolWorker]:
    """Every readable pool worker record of every pool on the volume."""
    records = []
    for pool in _names(pools_dir(layout)):
        for filename in _names(pools_dir(layout) / pool / "workers"):
            name = filename.removesuffix(JSON_SUFFIX)
            try:
                record = read_pool_worker(layout, pool, name)
            except ValueError:  # not a valid pool or worker name: never followed
                continue
            if record is not None:
                records.append(record)
    return records


def write_pool_heartbeat(layout: Layout, heartbeat: PoolHeartbeat) -> None:
    path = heartbeat_file(layout, heartbeat.pool)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, heartbeat.to_json_bytes())


def read_pool_heartbeat(layout: Layout, pool: str) -> PoolHeartbeat | None:
    """The pool's heartbeat; None when it has none (stopped) or it is unreadable."""
    try:
        heartbeat = read_model_if_exists(heartbeat_file(layout, pool), PoolHeartbeat)
    except InvalidFile:
        return None
    return heartbeat if heartbeat is not None and heartbeat.pool == pool else None


def remove_pool_heartbeat(layout: Layout, pool: str) -> None:
    """Tell the pool's idle workers that it is stopping (they end within a second)."""
    with contextlib.suppress(FileNotFoundError):
        heartbeat_file(layout, pool).unlink()
