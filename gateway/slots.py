"""Upstream slots shared fairly: caps per caller and per task, a round-robin queue across tasks,
and a bounded wait.

``concurrency`` requests may be in flight upstream at once (per credential); one task may hold at
most ``task_concurrency`` of them and one caller token ``caller_concurrency``. A request that
cannot start waits in its task's queue; a freed slot goes to the next task in turn (round-robin by
task, first come first served within a task) whose caps allow it, so one task with many requests
cannot starve another's single one. A request that waited ``queue_timeout_s`` is answered 529
``overloaded_error`` (Claude Code waits and retries such an answer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from .errors import RequestRefused


@dataclass(eq=False)
class _Waiter:
    task_id: str
    caller: str
    future: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SlotsBusy(RequestRefused):
    """No upstream slot came free for this request within the bounded wait."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(529, "overloaded_error",
                         f"the gateway found no free upstream slot for this request within "
                         f"{waited_s:g} s; retry later")


class FairSlots:
    """Slots with per-task and per-caller caps and a round-robin queue by task."""

    def __init__(self, total: int, per_task: int, per_caller: int, timeout_s: float) -> None:
        self.total, self.per_task, self.per_caller, self.timeout_s = total, per_task, per_caller, timeout_s
        self.in_flight = 0
        self._by_task: dict[str, int] = {}
        self._by_caller: dict[str, int] = {}
        self._queues: OrderedDict[str, deque[_Waiter]] = OrderedDict()
        self._served: dict[str, int] = {}
        """When each task last got a slot (a counter): the task served longest ago goes next."""
        self._turn = 0

    def _fits(self, task_id: str, caller: str) -> bool:
        return (self.in_flight < self.total and self._by_task.get(task_id, 0) < self.per_task
                and self._by_caller.get(caller, 0) < self.per_caller)

    def _take(self, task_id: str, caller: str) -> None:
        self._turn += 1
        self._served[task_id] = self._turn
        self.in_flight += 1
        self._by_task[task_id] = self._by_task.get(task_id, 0) + 1
        self._by_caller[caller] = self._by_caller.get(caller, 0) + 1

    async def acquire(self, task_id: str, caller: str) -> None:
        """A slot for the task's caller, or :class:`SlotsBusy` after the bounded wait."""
        if task_id not in self._queues and self._fits(task_id, caller):
            self._take(task_id, caller)
            return
        waiter = _Waiter(task_id, caller)
        self._queues.setdefault(task_id, deque()).append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.timeout_s)
        except TimeoutError:
            self._abandon(waiter)
            raise SlotsBusy(self.timeout_s) from None
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise

    def _abandon(self, waiter: _Waiter) -> None:
        if waiter.future.done() and not waiter.future.cancelled():
            self.release(waiter.task_id, waiter.caller)  # granted just as the wait ended
        else:
            waiter.future.cancel()
            self._forget(waiter)

    def release(self, task_id: str, caller: str) -> None:
        """Give a slot back and hand free slots to waiting tasks in turn."""
        self.in_flight -= 1
        for counts, key in ((self._by_task, task_id), (self._by_caller, caller)):
            counts[key] -= 1
            if not counts[key]:
                del counts[key]
        if task_id not in self._by_task and task_id not in self._queues:
            self._served.pop(task_id, None)  # forget a task with nothing in flight or waiting
        self._grant()

    def _grant(self) -> None:
        progress = True
        while progress and self.in_flight < self.total:
            progress = False
            for task_id in sorted(self._queues, key=lambda t: self._served.get(t, 0)):
                queue = self._queues[task_id]
                waiter = next((w for w in queue if self._fits(w.task_id, w.caller)), None)
                if waiter is None:
                    continue
                queue.remove(waiter)
                if not queue:
                    del self._queues[task_id]
                self._take(waiter.task_id, waiter.caller)
                waiter.future.set_result(None)
                progress = True
                break

    def _forget(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.task_id)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(waiter)
            if not queue:
                del self._queues[waiter.task_id]
