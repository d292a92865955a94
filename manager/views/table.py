"""What the CLI shows people: the task rows of :mod:`orchestration_views.rows` as a rich table,
and results in a few lines."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from orchestration_protocol import Result, TaskState
from orchestration_protocol.untrusted import escape_line, fence
from orchestration_views.ledger import LedgerSummary
from orchestration_views.rows import format_age

STATE_STYLES = {
    TaskState.SUCCESS: "green",
    TaskState.RUNNING: "cyan",
    TaskState.PENDING: "white",
    TaskState.BLOCKED: "yellow",
    TaskState.LOST: "magenta",
    TaskState.FAILED: "red",
    TaskState.TIMEOUT: "red",
    TaskState.CANCELLED: "yellow",
    TaskState.INVALID: "bold red",
}


def _note(row: dict[str, Any]) -> str:
    if row["problems"]:
        return str(row["problems"][0])
    if row["error"]:
        return str(row["error"])
    if row["budget_error"]:
        return str(row["budget_error"])
    if row["phase"]:
        round_note = f"{row['round']}, " if row.get("round") else ""
        return f"{round_note}{row['phase']}, beat {format_age(row['heartbeat_age_s'])} ago"
    if row.get("check"):
        on = f" on {row['checked_branch']}" if row.get("checked_branch") else ""
        return f"check {row['check']}{on}" + (f" after {row['round']}" if row.get("round") else "")
    if row["state"] == "blocked":
        return "waits for " + ", ".join(row["depends_on"])
    return ""


def status_table(rows: list[dict[str, Any]], title: str | None = None) -> Table:
    """The status table: state, priority, age, worker, cost, branch and a note per task."""
    table = Table(title=title, title_justify="left", expand=False, pad_edge=False)
    for column, justify in (
        ("task", "left"),
        ("state", "left"),
        ("priority", "right"),
        ("try", "right"),
        ("age", "right"),
        ("worker", "left"),
        ("cost", "right"),
        ("branch", "left"),
        ("note", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        state = TaskState(row["state"])
        cost = f"${row['cost_usd']:.4f}" if row["cost_usd"] is not None else ""
        tries = f"{row['attempt']}/{row['max_attempts']}" if row["max_attempts"] else ""
        table.add_row(
            row["id"],
            Text(state.value, style=STATE_STYLES[state]),
            str(row.get("priority") or 0),
            tries,
            format_age(row["age_s"]),
            row["worker"] or "",
            cost,
            row["branch"] or "",
            Text(_note(row)[:160]),
        )
    return table


def result_text(result: Result, ledger: LedgerSummary | None = None) -> str:
    """A result in a few lines for people; its cost by the gateway's ``ledger`` when it has one."""
    lines = [f"{result.task_id}: {result.status.value} (attempt {result.attempt})"]
    if result.error:
        lines.append("error:")
        lines.append(fence(result.error, f"the error of task {result.task_id}", limit=4000))
    budget_error = ledger.budget_errors.get(result.attempt) if ledger else None
    if budget_error and budget_error not in (result.error or ""):
        lines.append(f"budget: {budget_error}")
    if result.branch:
        pushed = "pushed" if result.pushed else "not pushed"
        lines.append(f"branch: {result.branch} ({pushed}) {result.head_commit or ''}".rstrip())
    if result.round is not None:
        session = f", session {result.round.session.value}" if result.round.session.value != "none" else ""
        lines.append(f"round: {result.round.kind.value} {result.round.number}{session}")
    if result.check is not None:
        lines.extend(_check_text(result))
    if result.files_changed:
        lines.append(
            f"changed: {len(result.files_changed)} files, +{result.insertions} "
            f"-{result.deletions}: " + ", ".join(result.files_changed[:10])
        )
    lines.extend(_cost_text(result, ledger))
    if result.duration_s is not None:
        lines.append(f"took: {result.duration_s:.1f}s")
    if result.output:
        lines.append("output:")
        lines.append(
            fence(
                result.output.rstrip(), f"the output of task {result.task_id}'s agent", limit=8000
            )
        )
    return "\n".join(lines)


def _check_text(result: Result) -> list[str]:
    check = result.check
    assert check is not None
    counts = check.counts
    verdict = "passed" if check.passed else "FAILED"
    lines = [
        f"check: {verdict} ({escape_line(check.source or '?')}): exit {check.exit_code}, "
        f"{counts.passed} passed, {counts.failed} failed, {counts.errors} errors, "
        f"{check.duration_s:.1f}s"
    ]
    lines += [f"  failing: {escape_line(name)}" for name in check.failing_tests[:20]]
    if not check.passed and check.output_excerpt:
        lines.append(fence(check.output_excerpt, f"the end of task {result.task_id}'s check output", limit=3000))
    return lines


def _cost_text(result: Result, ledger: LedgerSummary | None) -> list[str]:
    turns = f", turns: {result.num_turns}" if result.num_turns is not None else ""
    if ledger is None:
        return [f"cost: ${result.cost_usd:.4f}{turns}"] if result.cost_usd is not None else []
    attempt = ledger.by_attempt.get(result.attempt, 0.0)
    lines = [f"cost: ${attempt:.4f} (gateway ledger){turns}"]
    if len(ledger.by_attempt) > 1 or result.attempt not in ledger.by_attempt:
        lines.append(f"cost of every attempt: ${ledger.cost_usd:.4f}")
    return lines
