"""Holds: money set aside for requests in flight, taken atomically with the budget check.

A request is admitted only if what its task (and the fleet) has spent, plus what requests in
flight hold, plus what this request could cost, stays within the budget. The check and the hold
are one step under an exclusive ``flock`` on ``ledger/.lock``, so neither concurrent requests in
one gateway nor two gateway processes sharing the volume can both pass on the same money.

A hold is a file ``ledger/.held/<task>~<instance>~<id>~<micro-USD>`` (its name is all there is to
read: one ``listdir`` sums every hold). It is removed when its request settles, after the ledger
line is appended (a reader in between counts the request twice, never zero times). Each gateway
process holds an ``flock`` on ``ledger/.held/.<instance>.lock`` while it runs; holds of an
instance whose lock is free belong to a process that died mid-request: :meth:`HoldBook.sweep`
turns each into a ledger line charging the hold (``gateway_gone``), since the upstream may have
billed it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestration_protocol import Layout, utc_now
from orchestration_protocol.gateway import LEDGER_DIR, LedgerEntry, append_line, ledger_file

from .tails import LedgerTotals

HELD_DIR = ".held"
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class Hold:
    """Money held for one request in flight."""

    task_id: str
    """The task it is held for."""
    attempt: int
    """The attempt that made the request."""
    usd: float
    """What the request could cost at most."""
    path: Path
    """The hold's file."""


@dataclass(frozen=True)
class Spending:
    """What a task and the fleet have spent and hold, read under the lock."""

    task_spent: float
    """The task's ledger total, all attempts."""
    task_held: float
    """What the task's requests in flight hold."""
    fleet_spent: float
    """The fleet's ledger total since the fleet budget's ``since`` (0 without one)."""
    fleet_held: float
    """What every request in flight holds."""


class HoldBook:
    """Holds and ledger lines, each change under the volume-wide lock."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.dir = layout.root / LEDGER_DIR / HELD_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.instance = f"{os.getpid()}.{secrets.token_hex(4)}"
        self.totals = LedgerTotals(layout.root / LEDGER_DIR)
        self._instance_fd = os.open(self.dir / f".{self.instance}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._instance_fd, fcntl.LOCK_EX)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            (self.dir / f".{self.instance}.lock").unlink()
        os.close(self._instance_fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The volume-wide lock (every gateway process of this root takes the same one)."""
        fd = os.open(self.layout.root / LEDGER_DIR / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def spending(self, task_id: str, fleet_since: datetime | None) -> Spending:
        """Spending and holds now; call it under :meth:`locked` to act on it."""
        task_held = fleet_held = 0.0
        for name in os.listdir(self.dir):
            parsed = _parse(name)
            if parsed is None:
                continue
            fleet_held += parsed[1]
            if parsed[0] == task_id:
                task_held += parsed[1]
        fleet_spent = self.totals.fleet(fleet_since) if fleet_since is not None else 0.0
        return Spending(self.totals.task(task_id), task_held, fleet_spent, fleet_held)

    def hold(self, task_id: str, attempt: int, usd: float) -> Hold:
        """Set ``usd`` aside (under :meth:`locked`)."""
        micro = max(1, round(usd * 1_000_000))
        name = f"{task_id}~{self.instance}~{secrets.token_hex(6)}~{micro}~{attempt}"
        path = self.dir / name
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return Hold(task_id, attempt, micro / 1_000_000, path)

    def settle(self, hold: Hold | None, entry: LedgerEntry | None) -> None:
        """Append ``entry`` (if any) to its ledger, then drop ``hold`` (if any)."""
        with self.locked():
            if entry is not None:
                append_line(ledger_file(self.layout, entry.task_id), entry)
            if hold is not None:
                with contextlib.suppress(FileNotFoundError):
                    hold.path.unlink()

    def sweep(self) -> int:
        """Charge the holds of dead gateway processes to their tasks; how many were charged."""
        charged = 0
        with self.locked():
            for name in os.listdir(self.dir):
                parsed = _parse(name)
                if parsed is None or not _owner_dead(self.dir, name.split("~")[1]):
                    continue
                task_id, usd, attempt = parsed
                entry = LedgerEntry(
                    at=utc_now(), task_id=task_id, attempt=attempt, outcome="gateway_gone",
                    status_code=0, cost_usd=usd,
                    error="the gateway stopped while the request was in flight; its hold is charged")
                append_line(ledger_file(self.layout, task_id), entry)
                (self.dir / name).unlink()
                charged += 1
        return charged


def _parse(name: str) -> tuple[str, float, int] | None:
    parts = name.split("~")
    if len(parts) != 5 or not parts[3].isdigit() or not parts[4].isdigit():
        return None
    return parts[0], int(parts[3]) / 1_000_000, max(1, int(parts[4]))


def _owner_dead(directory: Path, instance: str) -> bool:
    try:
        fd = os.open(directory / f".{instance}.lock", os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        (directory / f".{instance}.lock").unlink()
    return True
