"""Helpers for the dashboard tests: a board made through the protocol, and a dashboard served by
a real uvicorn in its own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from orchestration_protocol import (
    Layout,
    Result,
    ResultStatus,
    Task,
    WorkerPhase,
    try_claim_attempt,
    utc_now,
    write_task,
)

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def finished_task(layout: Layout, task_id: str, status: str = "success", **result: object) -> None:
    """A task, claimed and ended with ``status`` (one attempt), as a worker would leave it."""
    write_task(layout, Task(id=task_id, prompt=f"prompt of {task_id}"))
    handle = try_claim_attempt(layout, task_id, 1, worker_id=f"worker-{task_id}")
    assert handle is not None
    handle.heartbeat(WorkerPhase.RUNNING)
    handle.publish_result(
        Result(
            task_id=task_id,
            status=ResultStatus(status),
            completed_at=utc_now(),
            started_at=utc_now(),
            **result,  # type: ignore[arg-type]
        )
    )


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``root`` with its size and mtime (to prove nothing was
    written)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            info = path.lstat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return found


@contextmanager
def served(root: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``orchestrator --root ROOT dashboard --port P ARGS`` in its own process; yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [str(VENV_BIN / "orchestrator"), "--root", str(root), "dashboard", "--port", str(port), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read() if process.stdout else ""
                raise AssertionError(f"the dashboard did not start: {output}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
