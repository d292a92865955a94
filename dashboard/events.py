"""Pushing changes to the page: the protocol's watcher drives a :class:`BoardHub`, which keeps
the :class:`~dashboard.board.BoardModel` current and hands every subscriber (one per open page)
the rows that changed: a page gets the first rows of the board, then every change as a delta
(never the whole board again).

The watcher runs in its own threads (inotify through watchdog, or polling on network
filesystems); its callback only hands the task id to the event loop. The hub's pump collects the
ids for a moment (so a burst of files is one message), reads those tasks again in a worker
thread, and puts the delta into each subscriber's queue. A timer re-derives the states every few
seconds for what time alone changes (a lease running out makes a task lost). Log files are
watched too: a write to ``logs/<id>.log`` wakes the pages that follow that log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from anyio import to_thread

from orchestration_protocol import Layout, ProtocolEvent, ProtocolWatcher
from orchestration_protocol.watcher import WatchKind

from .board import BoardModel, Delta

logger = logging.getLogger(__name__)

DEBOUNCE_S = 0.02
"""How long the pump gathers events before it reads the tasks they name."""
TIMER_S = 5.0
"""How often states are derived again without an event (leases run out by time alone)."""
ROOT_RETRY_S = 2.0
"""How often a root that is missing (or not yet an orchestration root) is looked at again."""
RESCAN_S = 30.0
SETTLE_S = 0.2
"""At start, the watcher's first scan is over once no event came for this long."""
SETTLE_MAX_S = 30.0
"""The longest the start waits for that (a busy volume never falls quiet)."""
QUEUE_LIMIT = 256
"""Messages a slow page may fall behind by; past that it is dropped and reconnects afresh."""
WATCHED: tuple[WatchKind, ...] = ("task", "status", "result", "cancel", "log", "priorities")


class Subscription:
    """One page's queue of messages."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_LIMIT)

    def offer(self, message: dict[str, Any]) -> bool:
        """Queue ``message``; False (and the subscription closed) when the page is too far
        behind."""
        try:
            self.queue.put_nowait(message)
            return True
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False


class BoardHub:
    """The board, the watcher that keeps it current, and the pages that follow it."""

    def __init__(self, layout: Layout, *, polling: bool | None = None) -> None:
        self.layout = layout
        self.model = BoardModel(layout)
        self.polling = polling
        self.seq = 0
        self.subscribers: set[Subscription] = set()
        self.log_waiters: dict[str, set[asyncio.Event]] = {}
        self.ready = asyncio.Event()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: ProtocolWatcher | None = None
        self._pump: asyncio.Task[None] | None = None

    # --- lifetime --------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the board and start following it (the page is served meanwhile)."""
        self._loop = asyncio.get_running_loop()
        self._pump = asyncio.create_task(self._run(), name="dashboard-pump")

    async def stop(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        await to_thread.run_sync(self._stop_watcher)
        for subscription in list(self.subscribers):
            subscription.offer({"type": "bye"})

    def _stop_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def _start_watcher(self) -> bool:
        """Start the watcher once every directory of the root exists; True when it runs. The
        watcher makes the directories it follows, and the dashboard writes nothing, so until then
        the board is read whole every ``ROOT_RETRY_S`` instead (a root of hand-dropped task files
        has ``tasks/`` alone)."""
        if self._watcher is not None:
            return True
        if not all(directory.is_dir() for directory in self.layout.directories()):
            return False
        watcher = ProtocolWatcher(
            self.layout.root,
            self._from_watcher,
            kinds=WATCHED,
            polling=self.polling,
            rescan_interval_s=RESCAN_S,
        )
        watcher.start()
        self._watcher = watcher
        return True

    # --- events ------------------------------------------------------------------------------

    def _from_watcher(self, event: ProtocolEvent) -> None:
        """Called in the watcher's thread: hand the event to the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_event, event.kind, event.task_id)

    def _on_event(self, kind: str, task_id: str) -> None:
        if kind == "log":
            for waiter in self.log_waiters.get(task_id, ()):
                waiter.set()
            return
        if task_id:  # priorities.csv names none: the refresh reads it, and redraws what changed
            self._dirty.add(task_id)
        self._wake.set()

    async def _run(self) -> None:
        watching = False
        first = True
        while True:
            try:
                watching = await to_thread.run_sync(self._start_watcher) if not watching else True
            except Exception as error:  # inotify limits, permissions: show it, try again
                logger.warning("cannot watch %s: %s", self.layout.root, error)
            if first and watching:
                await self._settle()
            dirty: set[str] | None = self._take_dirty() if watching and not first else None
            delta = await to_thread.run_sync(self._refresh, dirty)
            if first:
                first = False
                self.ready.set()
            elif delta.seq != self.seq:
                self._publish(delta)
            self.seq = delta.seq
            timeout = TIMER_S if watching else ROOT_RETRY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
                await asyncio.sleep(DEBOUNCE_S)

    async def _settle(self) -> None:
        """Wait until the watcher's first scan has named every file (no event for
        ``SETTLE_S``, at most ``SETTLE_MAX_S``), then forget the names: the full read that
        follows reads every file after its event, and a second pass over 10,000 tasks would hold
        up the first change shown. A change after this is an event again."""
        deadline = time.monotonic() + SETTLE_MAX_S
        while time.monotonic() < deadline:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), SETTLE_S)
            except TimeoutError:
                break
        self._take_dirty()

    def _take_dirty(self) -> set[str]:
        self._wake.clear()
        dirty, self._dirty = self._dirty, set()
        return dirty

    def _refresh(self, dirty: set[str] | None) -> Delta:
        return self.model.refresh(dirty, monotonic=time.monotonic())

    def _publish(self, delta: Delta) -> None:
        self._broadcast(
            {
                "type": "delta",
                "seq": delta.seq,
                "rows": delta.rows,
                "removed": delta.removed,
                "summary": delta.summary,
            }
        )

    def _broadcast(self, message: dict[str, Any]) -> None:
        for subscription in list(self.subscribers):
            if not subscription.offer(message):
                self.subscribers.discard(subscription)

    # --- subscribers -------------------------------------------------------------------------

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """The first page of the board, then every delta, for one page, until it goes away. A
        delta the first page already holds (its ``seq`` is not newer) is left out."""
        subscription = Subscription()
        await self.ready.wait()
        self.subscribers.add(subscription)
        try:
            first = await to_thread.run_sync(self.model.window)
            yield first
            while True:
                message = await subscription.queue.get()
                if message is None or message.get("type") == "bye":
                    return
                if message.get("type") == "delta" and message["seq"] > first["seq"]:
                    yield message
        finally:
            self.subscribers.discard(subscription)

    @contextlib.contextmanager
    def log_waiter(self, task_id: str) -> Any:
        """An event set whenever ``logs/<task_id>.log`` is written."""
        waiter = asyncio.Event()
        self.log_waiters.setdefault(task_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self.log_waiters.get(task_id, set())
            waiters.discard(waiter)
            if not waiters:
                self.log_waiters.pop(task_id, None)
