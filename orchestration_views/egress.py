"""Every outbound connection the gateway's proxy was asked for (``orchestrator egress``, the
dashboard).

The gateway appends one :class:`~orchestration_protocol.gateway.EgressEntry` per connection,
allowed or refused, to ``egress/<id>.jsonl``; this module reads those logs (one task's, or every
task's) and puts them in time order, newest last.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from orchestration_protocol import Layout, is_valid_task_id
from orchestration_protocol.gateway import EGRESS_DIR, EgressEntry, egress_file, read_egress

EGRESS_SUFFIX = ".jsonl"


def egress_ids(layout: Layout) -> list[str]:
    """Every task with an egress log."""
    try:
        names = os.listdir(layout.root / EGRESS_DIR)
    except (FileNotFoundError, NotADirectoryError):
        return []
    ids = [name[: -len(EGRESS_SUFFIX)] for name in names if name.endswith(EGRESS_SUFFIX)]
    return sorted(task_id for task_id in ids if is_valid_task_id(task_id))


def _moment(entry: EgressEntry) -> datetime:
    return entry.at if entry.at.tzinfo is not None else entry.at.replace(tzinfo=UTC)


def egress_known(layout: Layout, task_id: str) -> bool:
    """Whether ``task_id`` has a task file or an egress log."""
    return layout.task_file(task_id).exists() or egress_file(layout, task_id).exists()


def egress_log(
    layout: Layout, task_id: str | None = None, *, denied_only: bool = False
) -> list[EgressEntry]:
    """The connections of one task (every task when None), oldest first."""
    ids = [task_id] if task_id is not None else egress_ids(layout)
    entries = [entry for one in ids for entry in read_egress(layout, one)]
    if denied_only:
        entries = [entry for entry in entries if not entry.allowed]
    return sorted(entries, key=_moment)


def egress_row(entry: EgressEntry) -> list[str]:
    """time, task, attempt, method, host:port, allowed/refused, reason."""
    return [
        _moment(entry).strftime("%Y-%m-%d %H:%M:%S"),
        entry.task_id,
        f"#{entry.attempt}",
        entry.method,
        f"{entry.host}:{entry.port}",
        "allowed" if entry.allowed else "refused",
        entry.reason or "",
    ]


def egress_text(entries: list[EgressEntry]) -> str:
    """One aligned line per connection (plain text, so it greps well)."""
    rows = [egress_row(entry) for entry in entries]
    if not rows:
        return ""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)
