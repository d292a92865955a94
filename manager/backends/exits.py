"""Hearing of workers' exits on engines that announce none (Swarm from its managers, SLURM from
its queue and completion log): poll the engine's list of workers and report each that ended."""

from __future__ import annotations

import threading
from collections.abc import Callable

from .base import WorkerRecord


def poll_exits(
    list_workers: Callable[[], list[WorkerRecord]],
    callback: Callable[[WorkerRecord], None],
    stop: threading.Event,
    *,
    interval_s: float,
    name: str,
) -> threading.Thread:
    """A daemon thread that calls ``callback`` once for every attempt whose worker ends after it
    started (ended before: not news; an attempt is a task and its number, as a worker's view
    name changes when the next attempt starts), until ``stop`` is set; an engine that does not answer is asked
    again a little later."""

    def loop() -> None:
        reported: set[tuple[str, int | None]] | None = None
        while not stop.is_set():
            try:
                records = list_workers()
            except Exception:  # engine restarting: try again shortly
                stop.wait(2)
                continue
            ended = {(r.task_id, r.attempt): r for r in records if not r.running}
            if reported is None:
                reported = set(ended)
            for key, record in ended.items():
                if key not in reported:
                    reported.add(key)
                    callback(record)
            stop.wait(interval_s)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
