"""One model request's bookkeeping: the ledger line and the log line written when it ends.

The log line (stderr, logger ``gateway``) names task, attempt, path, status, tokens, cost and
milliseconds, and never a header value: no credential or caller token can reach it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from orchestration_protocol import utc_now
from orchestration_protocol.gateway import GatewayCaller, LedgerEntry

from . import metrics
from .budgets import Budgets
from .holds import Hold
from .prices import cost_usd

log = logging.getLogger("gateway")


@dataclass
class Exchange:
    """A request from its arrival to its end; :meth:`finish` once."""

    budgets: Budgets
    """Where the request is recorded and its hold settled."""
    path: str
    """The endpoint called (no query)."""
    metered: bool = True
    """Whether the request goes into the ledger (``count_tokens`` costs nothing and does not)."""
    caller: GatewayCaller | None = None
    """Who called, once known."""
    model: str | None = None
    """The model the request named."""
    started: float = field(default_factory=time.monotonic)
    """When it arrived (monotonic clock)."""
    finished: bool = False
    """Whether :meth:`finish` ran."""
    node: str | None = None
    """The node whose gateway serves it (written into its ledger line); None on one host."""
    hold: Hold | None = None
    """The money held for it while in flight (released when it ends)."""
    max_tokens: int | None = None
    """The ``max_tokens`` it was sent with."""

    def finish(
        self,
        status: int,
        outcome: str,
        usage: dict[str, int] | None = None,
        retries: int = 0,
        error: str | None = None,
        unsettled: bool = False,
    ) -> LedgerEntry | None:
        """Write the ledger line (when the caller is known and the path metered), drop the
        hold, and log. ``unsettled``: the reply ended before its usage event (the caller left),
        so it is charged what it could have cost: the input the stream reported with every
        output token allowed, or, when not even the input was reported, the whole hold."""
        if self.finished:
            return None
        self.finished = True
        entry = None
        if self.caller is not None:
            entry = LedgerEntry(
                at=utc_now(), task_id=self.caller.task_id, attempt=self.caller.attempt,
                model=self.model, path=self.path, outcome=outcome, status_code=status,
                error=error, retries=retries, node=self.node, **(usage or {}),
            )
            entry.cost_usd = cost_usd(entry)
            if unsettled:
                self._charge_unsettled(entry)
        self.budgets.settle(self.hold, entry if self.metered else None)
        self._log(status, outcome, entry, retries, error)
        metrics.exchange_ended(self.path, status, outcome, error, time.monotonic() - self.started)
        return entry

    def _charge_unsettled(self, entry: LedgerEntry) -> None:
        if entry.input_tokens or entry.cache_read_input_tokens or self.hold is None:
            entry.output_tokens = max(entry.output_tokens, self.max_tokens or 0)
            entry.cost_usd = cost_usd(entry)
        else:
            entry.cost_usd = max(entry.cost_usd, self.hold.usd)
        entry.error = (entry.error or "the reply ended early") + (
            "; charged as if every output token allowed was made")

    def _log(
        self, status: int, outcome: str, entry: LedgerEntry | None, retries: int, error: str | None
    ) -> None:
        ms = (time.monotonic() - self.started) * 1000
        who = f"task={self.caller.task_id} attempt={self.caller.attempt}" if self.caller else "task=-"
        tokens = ""
        if entry is not None:
            tokens = (
                f" in={entry.input_tokens} out={entry.output_tokens}"
                f" cache_read={entry.cache_read_input_tokens}"
                f" cache_write={entry.cache_creation_input_tokens} cost=${entry.cost_usd:.6f}"
            )
        why = f" error={error!r}" if error else ""
        log.info("%s %s %s %s%s retries=%d ms=%.1f%s",
                 who, self.path, status, outcome, tokens, retries, ms, why)
