"""The browser the dashboard's browser tests drive: Debian's ``chromium`` through Debian's
``chromium-driver`` (same source package, so their versions match; nothing is downloaded)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.dashboard.browsing import ARTIFACTS, CHROMEDRIVER, CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    require(shutil.which(CHROMIUM) is not None or Path(CHROMIUM).exists(),
            f"no Chromium at {CHROMIUM}; apt-get install chromium chromium-driver")
    require(Path(CHROMEDRIVER).exists(), f"no chromedriver at {CHROMEDRIVER}; apt-get install chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "selenium is not installed; pip install -e '.[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1600,1000", "--force-device-scale-factor=1",
                     "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(10)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
