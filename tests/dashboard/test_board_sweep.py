"""The board's sweep: what raises no event (a task file removed, a stray file dropped into
``tasks/``) still reaches the board within a round of the sweep. The model is driven with its
own clock (``monotonic``), on a real volume."""

from __future__ import annotations

from pathlib import Path

from dashboard.board import SWEEP_S, BoardModel
from orchestration_protocol import Layout
from tests.dashboard.boards import counts, large_board

TASKS = 400
TICK_S = 5.0


def test_a_removed_task_and_a_stray_file_reach_the_board_within_a_round(tmp_path: Path) -> None:
    layout = large_board(Layout(tmp_path / "root"), TASKS)
    model = BoardModel(layout)
    first = model.refresh(None, monotonic=0.0)
    assert len(first.rows) == TASKS and first.summary["counts"] == counts(TASKS)
    layout.task_file("task-000003").unlink()
    (layout.tasks_dir / "notes from a person.json").write_text("{}")
    removed: list[str] = []
    problems: list[str] = []
    now = 0.0
    while now < 1.5 * SWEEP_S and not (removed and problems):
        now += TICK_S
        delta = model.refresh(set(), monotonic=now)
        removed += delta.removed
        problems = [problem["error"] for problem in delta.summary["problems"]]
    assert removed == ["task-000003"]
    assert any("notes from a person.json" in problem for problem in problems)
    assert now <= SWEEP_S + 2 * TICK_S
    assert model.published.summary["tasks"] == TASKS - 1
