"""What the browser tests share: where Chromium and its driver are, and how a test waits for the
page and reads it. The driver itself is the ``browser`` fixture (conftest.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"


def console_errors(driver, allowed: tuple[str, ...] = ()) -> list[str]:
    entries = driver.get_log("browser")
    return [
        entry["message"] for entry in entries
        if entry["level"] == "SEVERE" and not any(part in entry["message"] for part in allowed)
    ]


def wait_for(condition, timeout: float, what: str, step: float = 0.01) -> float:
    """Seconds until ``condition()`` held; AssertionError naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def row_state(driver, task_id: str) -> str | None:
    return driver.execute_script(
        "const tr = document.querySelector(`#task-rows tr[data-id='${arguments[0]}']`);"
        "return tr ? tr.querySelector('.state').textContent : null;",
        task_id,
    )


def open_board(driver, url: str) -> None:
    driver.get(url + "/")
    wait_for(lambda: driver.execute_script(
        "return document.getElementById('conn').dataset.state") == "live", 10, "the live stream")
    driver.execute_script("window.__notReloaded = true;")
