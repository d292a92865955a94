"""``orchestrator watch``: a live table redrawn when the volume changes.

With many tasks it shows a line of counts, every task that is not finished, and the most
recently finished ones, so a board of a thousand finished tasks stays one screen and cheap.
"""

from __future__ import annotations

from rich.console import Group
from rich.live import Live
from rich.text import Text

from orchestration_protocol import Layout
from orchestration_protocol.priorities import Priorities, read_priorities
from orchestration_protocol.watcher import WatchKind
from orchestration_views.ledger import LedgerCache, fleet_budget_view, ledger_cache
from orchestration_views.rows import board_problems, cost_lines, status_rows

from ..output import console
from .monitor import View, follow
from .table import status_table

MAX_ROWS = 30


def render(
    view: View,
    scope: list[str] | None,
    ledgers: LedgerCache | None = None,
    priorities: Priorities | None = None,
) -> Group:
    """Counts, the table of active and recent tasks (in the queue's order), the total cost and
    the fleet budget, and unusable files (the priorities file's bad lines too)."""
    rows = status_rows(view.board, view.states, view.now, scope, ledgers, priorities)
    active = [row for row in rows if row["state"] in ("running", "pending", "blocked", "lost")]
    finished = [row for row in rows if row not in active]
    shown = active[:MAX_ROWS] + finished[-max(0, MAX_ROWS - len(active)) :]
    hidden = len(rows) - len(shown)
    header = Text(f"{view.progress.summary()}" + (f" ({hidden} more not shown)" if hidden else ""))
    fleet = fleet_budget_view(ledgers.layout, ledgers) if ledgers else None
    parts: list[Text | object] = [header, status_table(shown)]
    parts.extend(Text(line) for line in cost_lines(rows, fleet))
    parts.extend(
        Text(f"error: {problem['error']}", style="red")
        for problem in board_problems(view.board, priorities)
    )
    return Group(*parts)  # type: ignore[arg-type]


def watch_live(layout: Layout, scope: list[str] | None, *, until_done: bool) -> None:
    """Follow the volume, redrawing on every change, until Ctrl-C (or done, if asked)."""
    out = console()
    ledgers = ledger_cache(layout)
    with Live(console=out, auto_refresh=False, transient=False) as live:

        def on_view(view: View) -> bool:
            priorities = read_priorities(layout.root)
            live.update(render(view, scope, ledgers, priorities), refresh=True)
            return until_done and view.progress.done

        kinds: tuple[WatchKind, ...] = ("task", "status", "result", "cancel", "priorities")
        follow(layout, scope, on_view, kinds=kinds, every_timer=True)  # ages move on
