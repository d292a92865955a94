"""Ledger totals kept current by reading only what was appended since the last look.

Each ``ledger/<task>.jsonl`` is read from the offset where the last read stopped (a file that
shrank or was replaced is read again from the start), so a total is right even when another
gateway process appends to the same ledger, and a budget check reads a few bytes, not the file.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from orchestration_protocol.gateway import LedgerEntry


@dataclass
class _Tail:
    inode: int = -1
    offset: int = 0
    partial: bytes = b""
    entries: list[tuple[datetime, float]] = field(default_factory=list)
    total: float = 0.0


class LedgerTotals:
    """Running totals of the ledger files in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._tails: dict[str, _Tail] = {}

    def task(self, task_id: str) -> float:
        """What the task has cost, all attempts."""
        return self._refresh(f"{task_id}.jsonl").total

    def fleet(self, since: datetime) -> float:
        """What every task has cost since ``since``."""
        total = 0.0
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.directory):
                if name.endswith(".jsonl") and not name.startswith("."):
                    total += sum(c for at, c in self._refresh(name).entries if at >= since)
        return total

    def _refresh(self, name: str) -> _Tail:
        tail = self._tails.setdefault(name, _Tail())
        try:
            fd = os.open(self.directory / name, os.O_RDONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, OSError):
            self._tails[name] = _Tail()
            return self._tails[name]
        try:
            stat = os.fstat(fd)
            if stat.st_ino != tail.inode or stat.st_size < tail.offset:
                tail = self._tails[name] = _Tail(inode=stat.st_ino)
            if stat.st_size > tail.offset:
                data = os.pread(fd, stat.st_size - tail.offset, tail.offset)
                tail.offset += len(data)
                _take(tail, data)
        finally:
            os.close(fd)
        return tail


def _take(tail: _Tail, data: bytes) -> None:
    lines = (tail.partial + data).split(b"\n")
    tail.partial = lines.pop()
    for line in lines:
        with contextlib.suppress(ValidationError, ValueError):
            entry = LedgerEntry.model_validate_json(line)
            tail.entries.append((entry.at, entry.cost_usd))
            tail.total += entry.cost_usd
