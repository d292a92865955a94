"""The gateway stops itself when nothing needs it: no caller token on file (every attempt that
uses the model holds one from its start to its end) and no fresh worker or warm-pool
heartbeat for ``idle_stop_s`` seconds. It exits 0, so the container's ``on-failure`` restart
policy leaves it stopped, and the next spawning command (``spawn``, ``run``, ``dispatch``,
``pool``) starts it again: ``start_gateway`` starts a gateway that does not run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable

from orchestration_protocol import Layout
from orchestration_protocol.gateway import callers_dir
from orchestration_protocol.pool import pools_dir

log = logging.getLogger("gateway")
FRESH_HEARTBEAT_S = 120.0
"""A heartbeat younger than this counts as a running worker (leases are shorter)."""
IDLE_POLL_S = 15.0
"""How often the gateway looks whether it is still needed: an idle stop comes this much late
at most."""


def _any_entry(directory: str, newer_than: float | None = None) -> bool:
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if newer_than is None:
                    return True
                try:
                    if entry.stat(follow_symlinks=False).st_mtime > newer_than:
                        return True
                except FileNotFoundError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return False
    return False


def needed(layout: Layout, now: float) -> bool:
    """Whether a caller token is on file, a worker's heartbeat is fresh, or a warm pool beats
    (its idle workers will need the gateway the moment they claim)."""
    fresh = now - FRESH_HEARTBEAT_S
    if _any_entry(str(callers_dir(layout))) or _any_entry(str(layout.status_dir), fresh):
        return True
    try:
        pools = [entry.path for entry in os.scandir(pools_dir(layout)) if entry.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return False
    return any(_any_entry(pool, fresh) for pool in pools)


def _newest(directory: str) -> float | None:
    """The newest modification time among ``directory``'s visible entries (None: none)."""
    newest = None
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                    newest = mtime if newest is None else max(newest, mtime)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return newest


def last_needed(layout: Layout, now: float) -> float | None:
    """By :func:`needed`'s rule, the last moment something needed the gateway: ``now`` while a
    caller token is on file, else the later of the last token's removal (the directory's
    mtime) and the newest heartbeat plus :data:`FRESH_HEARTBEAT_S` (which may lie ahead of
    ``now``: still needed); None when nothing ever did. ``orchestrator doctor`` tells from it
    when an idle gateway stops."""
    callers = str(callers_dir(layout))
    if _any_entry(callers):
        return now
    moments = []
    with contextlib.suppress(OSError):
        moments.append(os.stat(callers).st_mtime)
    beats = [_newest(str(layout.status_dir))]
    with contextlib.suppress(OSError):
        beats += [_newest(entry.path) for entry in os.scandir(pools_dir(layout)) if entry.is_dir()]
    moments += [beat + FRESH_HEARTBEAT_S for beat in beats if beat is not None]
    return max(moments, default=None)


async def stop_when_idle(
    layout: Layout, idle_s: float, stop: Callable[[], None], poll_s: float = IDLE_POLL_S
) -> None:
    """Call ``stop`` once nothing needed the gateway for ``idle_s`` seconds."""
    idle_since = time.monotonic()
    while True:
        await asyncio.sleep(min(poll_s, idle_s))
        if await asyncio.to_thread(needed, layout, time.time()):
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= idle_s:
            log.info("no caller and no running worker for %.0f s; stopping (the next spawn "
                     "starts the gateway again)", idle_s)
            stop()
            return
