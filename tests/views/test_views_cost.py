"""Cost from the gateway's ledger, the egress log and budgets, as the CLI shows them: real task,
claim and result files written by the protocol's own functions, real ledger and egress lines
appended as the gateway appends them, and the CLI called in-process."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from manager.cli import main
from orchestration_protocol import Layout, Result, Task, claim_task, utc_now, write_task
from orchestration_protocol.gateway import (
    EgressEntry,
    LedgerEntry,
    append_line,
    budget_error,
    budget_file,
    egress_file,
    ledger_cost,
    ledger_file,
)
from orchestration_views.ledger import LedgerCache
from tests.gitrepo import make_remote
from tests.manager.test_manager_cli import ORCHESTRATOR

REPO = Path(__file__).parents[2]
T0 = datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("cli_process")


@pytest.fixture
def cli(layout: Layout, capsys):
    def invoke(*args: str) -> tuple[int, str, str]:
        code = main(["--root", str(layout.root), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def finished(layout: Layout, task_id: str, *, cost_usd: float | None, status: str = "success"):
    """A task that ran once and ended, as a worker leaves it."""
    write_task(layout, Task(id=task_id, prompt=f"do {task_id}"))
    handle = claim_task(layout, task_id, worker_id="w-test")
    assert handle is not None
    handle.publish_result(
        Result(
            task_id=task_id,
            status=status,
            output="done",
            completed_at=utc_now(),
            cost_usd=cost_usd,
            num_turns=3,
        )
    )


def spend(
    layout: Layout,
    task_id: str,
    cost_usd: float,
    *,
    attempt: int = 1,
    at: datetime | None = None,
    outcome: str = "ok",
    error: str | None = None,
) -> None:
    """One model request in the task's ledger, as the gateway writes it."""
    entry = LedgerEntry(
        at=at or utc_now(),
        task_id=task_id,
        attempt=attempt,
        model="claude-sonnet-4-5",
        outcome=outcome,
        status_code=200 if outcome == "ok" else 429,
        input_tokens=1000,
        output_tokens=200,
        cost_usd=cost_usd,
        error=error,
    )
    append_line(ledger_file(layout, task_id), entry)


def connect(layout: Layout, task_id: str, host: str, at: datetime, reason: str | None = None):
    """One egress connection, allowed unless a reason is given, as the gateway logs it."""
    entry = EgressEntry(
        at=at,
        task_id=task_id,
        attempt=1,
        method="CONNECT",
        host=host,
        port=443,
        allowed=reason is None,
        reason=reason,
    )
    append_line(egress_file(layout, task_id), entry)


def test_status_shows_each_tasks_cost_from_the_ledger_and_the_total(cli, layout: Layout) -> None:
    finished(layout, "metered", cost_usd=9.99)  # what the agent claimed; the ledger wins
    spend(layout, "metered", 0.25)
    spend(layout, "metered", 0.5)
    finished(layout, "unmetered", cost_usd=0.1)  # no gateway in between: the result's figure
    write_task(layout, Task(id="waiting", prompt="later"))
    code, out, _ = cli("status", "--json")
    assert code == 0, out
    report = json.loads(out)
    rows = {row["id"]: row for row in report["tasks"]}
    assert (rows["metered"]["cost_usd"], rows["metered"]["cost_source"]) == (0.75, "ledger")
    assert rows["metered"]["cost_usd"] == ledger_cost(layout, "metered")
    assert (rows["unmetered"]["cost_usd"], rows["unmetered"]["cost_source"]) == (0.1, "result")
    assert rows["waiting"]["cost_usd"] is None
    assert report["total_cost_usd"] == pytest.approx(0.85)
    assert report["fleet_budget"] is None
    code, out, _ = cli("status")
    assert code == 0 and "$0.7500" in out and "$0.1000" in out and "$9.99" not in out
    assert "total cost: $0.8500" in out


def test_the_ledger_is_read_again_only_when_it_changed(layout: Layout) -> None:
    finished(layout, "busy", cost_usd=None)
    cache = LedgerCache(layout)
    assert cache.summary("busy") is None
    spend(layout, "busy", 0.125)
    first = cache.summary("busy")
    assert first is not None and first.cost_usd == 0.125
    assert cache.summary("busy") is first  # unchanged file: no second read
    spend(layout, "busy", 0.25, attempt=2)
    second = cache.summary("busy")
    assert second is not first and second is not None
    assert second.cost_usd == ledger_cost(layout, "busy") == 0.375
    assert second.by_attempt == {1: 0.125, 2: 0.25}


def test_a_budget_refusal_is_shown_by_status_result_and_task_show(cli, layout: Layout) -> None:
    finished(layout, "spender", cost_usd=None, status="failed")
    spend(layout, "spender", 1.5)
    refusal = "task spender has spent $1.5000 of its $1.0000 budget"
    spend(layout, "spender", 0.0, outcome="refused", error=refusal)
    assert budget_error(layout, "spender", 1) == refusal
    code, out, _ = cli("status", "--json")
    row = json.loads(out)["tasks"][0]
    assert (row["budget_error"], row["cost_usd"]) == (refusal, 1.5)
    code, out, _ = cli("result", "spender")
    assert code == 1 and f"budget: {refusal}" in out and "cost: $1.5000 (gateway ledger)" in out
    code, out, _ = cli("result", "spender", "--json")
    data = json.loads(out)
    assert (data["budget_error"], data["ledger_cost_usd"], data["task_cost_usd"]) == (
        refusal,
        1.5,
        1.5,
    )
    code, out, _ = cli("task", "show", "spender")
    assert code == 0 and f"budget_error: {refusal}" in out and "cost_usd: 1.5" in out
    code, out, _ = cli("status")
    assert "has spent $1.5000" in out  # the note column


def test_egress_lists_every_connection_newest_last_and_filters(cli, layout: Layout) -> None:
    write_task(layout, Task(id="fetcher", prompt="pip install"))
    write_task(layout, Task(id="sneaky", prompt="curl"))
    write_task(layout, Task(id="quiet", prompt="nothing"))
    connect(layout, "fetcher", "pypi.org", T0)
    connect(layout, "fetcher", "files.pythonhosted.org", T0 + timedelta(seconds=3))
    connect(layout, "sneaky", "evil.example", T0 + timedelta(seconds=2), "not on the allowlist")
    code, out, _ = cli("egress")
    assert code == 0, out
    lines = out.splitlines()
    assert len(lines) == 3
    assert "pypi.org:443" in lines[0] and "allowed" in lines[0]
    assert "sneaky" in lines[1] and "evil.example:443" in lines[1]
    assert "refused" in lines[1] and lines[1].endswith("not on the allowlist")
    assert "files.pythonhosted.org:443" in lines[2]
    assert "2026-11-30 09:00:00" in lines[0] and "#1" in lines[0] and "CONNECT" in lines[0]
    code, out, _ = cli("egress", "fetcher")
    assert code == 0 and len(out.splitlines()) == 2 and "sneaky" not in out
    code, out, _ = cli("egress", "--denied")
    assert code == 0 and [line.split() for line in out.splitlines()] == [lines[1].split()]
    code, out, _ = cli("egress", "--json")
    entries = json.loads(out)
    assert [(e["task_id"], e["host"], e["allowed"]) for e in entries] == [
        ("fetcher", "pypi.org", True),
        ("sneaky", "evil.example", False),
        ("fetcher", "files.pythonhosted.org", True),
    ]
    assert entries[1]["reason"] == "not on the allowlist"
    code, out, _ = cli("egress", "fetcher", "--denied", "--json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = cli("egress", "quiet")
    assert (code, out.strip()) == (0, "no connections logged for quiet")


def test_egress_of_an_unknown_task_is_one_sentence(cli) -> None:
    code, out, err = cli("egress", "nosuch")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "No task 'nosuch'" in err and "Traceback" not in err


def test_budget_options_write_the_task_and_the_fleet_budget(
    cli, layout: Layout, tmp_path: Path, monkeypatch
) -> None:
    code, out, _ = cli("task", "create", "--id", "capped", "--max-budget", "2.5", "work")
    assert code == 0, out
    assert json.loads(layout.task_file("capped").read_text())["max_budget_usd"] == 2.5
    plan = tmp_path / "plan.yaml"
    plan.write_text("- {id: planned, prompt: 'work', max_budget_usd: 0.75}\n")
    assert cli("task", "create", "--plan", str(plan))[0] == 0
    assert json.loads(layout.task_file("planned").read_text())["max_budget_usd"] == 0.75
    code, out, _ = cli("task", "cancel", "capped")  # so that dispatch has nothing to start
    assert cli("task", "cancel", "planned")[0] == 0
    before = utc_now()
    code, out, _ = cli("dispatch", "--budget", "3", "--until-done")
    assert code == 1, out  # the cancelled tasks did not succeed
    budget = json.loads(budget_file(layout).read_text())
    assert budget["usd"] == 3 and datetime.fromisoformat(budget["since"]) >= before
    assert "fleet budget: $3.00" in out
    spend(layout, "capped", 0.5, at=before - timedelta(hours=1))  # before the budget: not counted
    spend(layout, "planned", 0.25)
    code, out, _ = cli("status", "--json")
    fleet = json.loads(out)["fleet_budget"]
    assert (fleet["usd"], fleet["spent_usd"], fleet["left_usd"]) == (3, 0.25, 2.75)
    code, out, _ = cli("status")
    assert "fleet budget: $0.2500 of $3.0000 spent ($2.7500 left)" in out
    monkeypatch.setenv("ORCHESTRATOR_BUDGET_USD", "4")
    assert cli("dispatch", "--until-done")[0] == 1
    assert json.loads(budget_file(layout).read_text())["usd"] == 4


def test_run_sets_the_fleet_budget_and_sums_up_the_cost(
    cli, layout: Layout, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("REPO_URL", str(make_remote(tmp_path)))
    code, out, _ = cli("run", "--agent", "command", "--budget", "5", "--max-budget", "1", "true")
    assert code == 0, out
    assert json.loads(budget_file(layout).read_text())["usd"] == 5
    assert json.loads(layout.task_file("task-001").read_text())["max_budget_usd"] == 1
    assert "total cost: $0.0000" in out
    spend(layout, "task-001", 0.5)
    code, out, _ = cli("wait", "--json")
    assert code == 0 and json.loads(out)["total_cost_usd"] == 0.5


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("run", "--budget", "0", "--agent", "command", "true"), "--budget"),
        (("dispatch", "--budget", "-1"), "--budget"),
        (("task", "create", "--max-budget", "0", "work"), "--max-budget"),
        (("run", "--max-budget", "-2", "--agent", "command", "true"), "--max-budget"),
    ],
)
def test_a_zero_or_negative_budget_is_one_sentence(cli, layout: Layout, args, option) -> None:
    code, out, err = cli(*args)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {option} must be more than 0 US dollars")
    assert err.count("\n") == 1
    assert not budget_file(layout).exists() and not list(layout.tasks_dir.iterdir())


def test_a_bad_budget_setting_is_one_sentence(cli, layout: Layout, monkeypatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_BUDGET_USD", "lots")
    code, _, err = cli("dispatch", "--until-done")
    assert code == 2 and "$ORCHESTRATOR_BUDGET_USD='lots' is not a positive number" in err
    assert not budget_file(layout).exists()


def test_readme_and_help_agree_on_egress_and_budgets() -> None:
    readme = (REPO / "README.md").read_text()
    for command, options in (
        ("egress", ["--denied", "--json"]),
        ("run", ["--budget", "--max-budget"]),
        ("dispatch", ["--budget"]),
        ("task create", ["--max-budget"]),
    ):
        helped = subprocess.run(
            [*ORCHESTRATOR, *command.split(), "--help"], capture_output=True, text=True, check=True
        ).stdout
        row = next(
            line for line in readme.splitlines() if line.startswith(f"| `orchestrator {command}")
        )
        for option in options:
            assert option in helped, (command, option)
            assert option in row, (command, option)
    top = subprocess.run([*ORCHESTRATOR, "--help"], capture_output=True, text=True, check=True)
    assert "  egress " in top.stdout
    assert "ORCHESTRATOR_BUDGET_USD" in readme
