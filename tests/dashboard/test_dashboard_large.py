"""The dashboard over a board of thousands of tasks, in a real headless Chromium: the page draws
the first rows of its view and every count, fetches the rest as its table is scrolled, finds a
task far down by search or by state, and shows a change of one task where that task now sorts
(also when it was not among the rows the page held). The board is made the way the benchmark
makes its roots (tests/dashboard/boards.py); the changes are written by the protocol's own
functions, as a worker writes them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dashboard.window import PAGE_ROWS
from orchestration_protocol import (
    Layout,
    Result,
    ResultStatus,
    WorkerPhase,
    try_claim_attempt,
    utc_now,
)
from orchestration_protocol.claims import ClaimHandle
from tests.dashboard.boards import counts, expected_state, large_board, ordered_ids, task_id
from tests.dashboard.browsing import ARTIFACTS, console_errors, open_board, row_state, wait_for
from tests.dashboard_helpers import served

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TASKS = 3000
PATIENCE_S = 60
"""How long a test waits for the page (a loaded machine is slow; nothing here is timed)."""


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return large_board(Layout(tmp_path_factory.mktemp("large") / "root"), TASKS)


@pytest.fixture(scope="module")
def dashboard(board: Layout) -> Iterator[str]:
    with served(board.root) as url:
        yield url


def chip_counts(driver) -> dict[str, int]:
    return driver.execute_script(
        "const found = {};"
        "for (const chip of document.querySelectorAll('#counts .chip')) {"
        "  const state = [...chip.classList].find((c) => c.startsWith('s-')).slice(2);"
        "  found[state] = Number(chip.querySelector('.n').textContent);"
        "}"
        "return found;"
    )


def table_ids(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#task-rows tr')].map((tr) => tr.dataset.id);"
    )


def more_text(driver) -> str | None:
    return driver.execute_script(
        "const more = document.getElementById('more');"
        "return more.hidden ? null : document.getElementById('more-text').textContent;"
    )


def first_page_shown(driver) -> None:
    wait_for(lambda: table_ids(driver) == ordered_ids(TASKS)[:PAGE_ROWS], PATIENCE_S,
             "the first page of rows", 0.05)


def claim(layout: Layout, task_id: str) -> ClaimHandle:
    """A worker's start: the claim, then its first heartbeat."""
    handle = try_claim_attempt(layout, task_id, 1, worker_id=f"worker-{task_id}")
    assert handle is not None, task_id
    handle.heartbeat(WorkerPhase.RUNNING)
    return handle


def test_a_board_of_thousands_paints_its_first_rows_and_counts_every_task(
    browser, dashboard: str
) -> None:
    open_board(browser, dashboard)
    wait_for(lambda: chip_counts(browser) == counts(TASKS), PATIENCE_S, "the count of every task")
    first_page_shown(browser)  # the waiting tasks first, in the queue's order
    assert len(table_ids(browser)) == PAGE_ROWS < TASKS  # not a row for each of the 3,000
    assert more_text(browser) == f"{PAGE_ROWS} of {TASKS:,} shown"
    assert browser.find_element("id", "task-count").text == str(TASKS)
    lanes = browser.execute_script("return document.querySelectorAll('#timeline rect.lane').length")
    assert lanes == 40  # the latest tasks that ran, not all 1,500
    browser.save_screenshot(str(ARTIFACTS / "large-board.png"))
    assert console_errors(browser) == []


def test_scrolling_the_table_reaches_the_task_at_the_far_end(browser, dashboard: str) -> None:
    open_board(browser, dashboard)
    first_page_shown(browser)
    browser.execute_script("document.getElementById('more-button').click()")
    wait_for(lambda: table_ids(browser) == ordered_ids(TASKS)[: 2 * PAGE_ROWS], PATIENCE_S,
             "the second page after 'show more'", 0.05)
    last = ordered_ids(TASKS)[-1]

    def scrolled_to_the_end() -> bool:
        browser.execute_script("const w = document.getElementById('tasks-wrap'); w.scrollTop = w.scrollHeight;")
        return row_state(browser, last) is not None

    wait_for(scrolled_to_the_end, 5 * PATIENCE_S, f"{last} after scrolling the table", 0.1)
    wait_for(lambda: more_text(browser) is None, PATIENCE_S, "the end of the table")
    assert table_ids(browser) == ordered_ids(TASKS)  # every row once, in the server's order
    assert row_state(browser, last) == "success"
    assert console_errors(browser) == []


def test_a_far_task_is_found_by_search_and_by_its_state(browser, dashboard: str) -> None:
    open_board(browser, dashboard)
    first_page_shown(browser)
    far = ordered_ids(TASKS)[-2]
    search = browser.find_element("id", "search")
    search.send_keys(far)
    wait_for(lambda: table_ids(browser) == [far], PATIENCE_S, f"{far} alone after the search")
    assert more_text(browser) is None
    search.clear()
    browser.execute_script("document.getElementById('search').dispatchEvent(new Event('input'))")
    first_page_shown(browser)

    failed = [task_id(i) for i in range(TASKS) if expected_state(i) == "failed"]
    browser.execute_script("document.querySelector('#counts .chip.s-failed').click()")
    wait_for(lambda: table_ids(browser) == failed[:PAGE_ROWS], PATIENCE_S, "the failed tasks")
    assert {row_state(browser, task) for task in table_ids(browser)} == {"failed"}
    assert more_text(browser) == f"{PAGE_ROWS} of 150 shown"
    browser.execute_script("document.querySelector('#counts .chip.s-failed').click()")
    first_page_shown(browser)
    assert console_errors(browser) == []


def test_a_state_change_of_one_task_shows_where_that_task_now_sorts(
    browser, dashboard: str, board: Layout
) -> None:
    open_board(browser, dashboard)
    first_page_shown(browser)
    near, far = ordered_ids(TASKS)[0], ordered_ids(TASKS)[1499]  # the first and last waiting
    assert row_state(browser, far) is None  # far down: not among the rows the page holds

    near_claim = claim(board, near)
    wait_for(lambda: table_ids(browser)[:1] == [near] and row_state(browser, near) == "running",
             PATIENCE_S, f"{near} running at the top")
    far_claim = claim(board, far)
    wait_for(lambda: row_state(browser, far) == "running", PATIENCE_S, f"{far} running")
    assert table_ids(browser)[:2] == sorted([near, far])  # running first (one age: by id)
    expected = counts(TASKS)
    expected["pending"] -= 2
    expected["running"] = 2
    assert chip_counts(browser) == expected

    near_claim.publish_result(Result(task_id=near, status=ResultStatus.SUCCESS, completed_at=utc_now()))
    expected["running"], expected["success"] = 1, expected["success"] + 1
    wait_for(lambda: chip_counts(browser) == expected, PATIENCE_S, "the counts after the result")
    wait_for(lambda: row_state(browser, near) is None, PATIENCE_S, f"{near} to leave the top rows")
    assert table_ids(browser)[0] == far

    browser.execute_script("document.querySelector('#counts .chip.s-failed').click()")
    wait_for(lambda: more_text(browser) == f"{PAGE_ROWS} of 150 shown", PATIENCE_S, "the failed view")
    far_claim.publish_result(Result(task_id=far, status=ResultStatus.FAILED, completed_at=utc_now(),
                                    error="the agent exited 1"))
    wait_for(lambda: row_state(browser, far) == "failed", PATIENCE_S, f"{far} in the failed view")
    assert table_ids(browser)[0] == far  # the newest failed task first
    assert more_text(browser) == f"{PAGE_ROWS + 1} of 151 shown"
    assert browser.execute_script("return window.__notReloaded") is True
    assert console_errors(browser) == []
