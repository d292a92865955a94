"""A board of thousands of tasks made in seconds: one ended and one pending task are written
through the protocol (as a worker leaves them), then their files are copied with the id
replaced, as ``scripts/bench/read_model.py`` makes its roots (writing each through the protocol
would take minutes of fsyncs)."""

from __future__ import annotations

import shutil

from orchestration_protocol import Layout, Task, write_task
from tests.dashboard_helpers import finished_task

ENDED = "template-ended"
FAILED = "template-failed"
PENDING = "template-pending"


def task_id(index: int) -> str:
    return f"task-{index:06d}"


def expected_state(index: int) -> str:
    """Even indexes ended (one in ten of them failed), odd ones wait."""
    if index % 2:
        return "pending"
    return "failed" if index % 20 == 6 else "success"


def large_board(layout: Layout, tasks: int) -> Layout:
    """``tasks`` tasks in ``layout``, their states by :func:`expected_state`."""
    layout.ensure()
    scratch = Layout(layout.root.parent / f"{layout.root.name}-templates").ensure()
    finished_task(scratch, ENDED, "success", files_changed=["a.py"], insertions=3)
    finished_task(scratch, FAILED, "failed", error="the agent exited 3")
    write_task(scratch, Task(id=PENDING, prompt="waits for a worker"))
    files = [path.relative_to(scratch.root) for path in scratch.root.rglob("*") if path.is_file()]
    templates = {
        template: {name: (scratch.root / name).read_text() for name in files if template in str(name)}
        for template in (ENDED, FAILED, PENDING)
    }
    for index in range(tasks):
        template = {"pending": PENDING, "failed": FAILED, "success": ENDED}[expected_state(index)]
        for relative, text in templates[template].items():
            target = layout.root / str(relative).replace(template, task_id(index))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text.replace(template, task_id(index)))
    shutil.rmtree(scratch.root)
    return layout


def counts(tasks: int) -> dict[str, int]:
    """The board's counts by state."""
    found: dict[str, int] = {}
    for index in range(tasks):
        found[expected_state(index)] = found.get(expected_state(index), 0) + 1
    return found


def ordered_ids(tasks: int) -> list[str]:
    """The ids in the page's order: the waiting tasks first (all of one priority and one age:
    by id), then the ended ones newest first (the failed template was written after the
    successful one), by id within each."""
    return [task_id(i) for state in ("pending", "failed", "success")
            for i in range(tasks) if expected_state(i) == state]  # fmt: skip
