"""Waiting for something outside this process (a container answering, a process gone, a claim
written) that announces itself by no event: one loop, so every wait has a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(
    check: Callable[[], T], *, timeout_s: float, interval_s: float = 0.05
) -> T | None:
    """``check()`` until it returns something truthy (returned) or ``timeout_s`` has passed
    (None); ``check`` may raise to give up early."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval_s)
