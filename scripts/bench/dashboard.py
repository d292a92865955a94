"""Benchmark of the dashboard: how fast a file change reaches the page, how fast a board of
1,000 tasks loads, and what the dashboard costs while it is open and idle.

Run by hand (needs Debian's chromium and chromium-driver, and selenium from the dev extras)::

    .venv/bin/python scripts/bench/dashboard.py [--tasks 1000] [--changes 50] [--idle 30] [--quick]

It prints markdown tables for the README's Performance section:

1. File change -> browser update. The bench stamps the moment it starts writing a task file
   (``write_task``: temp file, fsync, link into place); in the page, a MutationObserver stamps the
   moment the task's row was put into the table. Both stamps are wall-clock milliseconds of the
   same machine (``time.time()`` and ``performance.timeOrigin + performance.now()``). Baseline
   in the same run: the protocol watcher's own callback (inotify), i.e. what the server, the
   event stream and the page add on top of noticing the file at all; and what a page that polls
   ``/api/board`` every second would see on average (half the interval plus one fetch).
2. Page load with N finished tasks: from navigation start to the N-th row in the table, in the
   page's own clock; beside it ``GET /api/board`` and ``orchestrator status --json`` on the same
   root (the CLI's whole view of the volume).
3. The dashboard's memory (RSS) and CPU while idle with N tasks, with one page open and
   following; beside it ``orchestrator watch --json`` on the same root.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from manager.polling import poll_until
from orchestration_protocol import (
    Layout,
    ProtocolWatcher,
    Result,
    ResultStatus,
    Task,
    try_claim_attempt,
    utc_now,
    write_task,
)

VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def finished_task(layout: Layout, task_id: str, status: str, **result: object) -> None:
    """A task claimed and ended with ``status`` in one attempt, as a worker leaves it."""
    write_task(layout, Task(id=task_id, prompt=f"prompt of {task_id}"))
    handle = try_claim_attempt(layout, task_id, 1, worker_id=f"worker-{task_id}")
    assert handle is not None
    ended = Result(task_id=task_id, status=ResultStatus(status), completed_at=utc_now(), **result)  # type: ignore[arg-type]
    handle.publish_result(ended)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def served(root: Path) -> Iterator[str]:
    """``orchestrator --root ROOT dashboard`` on a free port, in its own process; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [str(VENV_BIN / "orchestrator"), "--root", str(root), "dashboard", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        poll_until(lambda: process.poll() is not None or _answers(url), timeout_s=30)
        if not _answers(url):
            raise SystemExit(f"The dashboard on {url} did not answer within 30 s.")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)

OBSERVER = """
window.__seen = {};
const rows = document.getElementById('task-rows');
new MutationObserver((mutations) => {
  const now = performance.timeOrigin + performance.now();
  for (const m of mutations) for (const node of m.addedNodes) {
    const id = node.dataset && node.dataset.id;
    if (id && !(id in window.__seen)) window.__seen[id] = now;
  }
}).observe(rows, {childList: true});
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def browser():  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1600,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(
        service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options
    )


def wait_live(driver, url: str) -> None:  # type: ignore[no-untyped-def]
    driver.get(url + "/")
    deadline = time.monotonic() + 30
    while driver.execute_script("return document.getElementById('conn').dataset.state") != "live":
        if time.monotonic() > deadline:
            raise SystemExit("the page did not connect")
        time.sleep(0.02)


def change_latency(root: Path, changes: int) -> tuple[list[float], list[float], float]:
    """Per change: file renamed -> row in the page (ms); file renamed -> watcher callback (ms);
    and one GET /api/board (ms) for the polling page's estimate."""
    layout = Layout(root).ensure()
    callbacks: dict[str, float] = {}
    watcher = ProtocolWatcher(
        root, lambda event: callbacks.setdefault(event.task_id, time.time() * 1000), kinds=("task",)
    )
    page, watched = [], []
    with served(root) as url, watcher:
        driver = browser()
        try:
            wait_live(driver, url)
            driver.execute_script(OBSERVER)
            for index in range(changes):
                task_id = f"change-{index:04d}"
                written = time.time() * 1000
                write_task(layout, Task(id=task_id, prompt=f"change {index}"))
                deadline = time.monotonic() + 5
                while (seen := driver.execute_script(f"return window.__seen['{task_id}']")) is None:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{task_id} did not appear within 5 s")
                    time.sleep(0.005)
                page.append(seen - written)
                while task_id not in callbacks:
                    time.sleep(0.001)
                watched.append(callbacks[task_id] - written)
                time.sleep(0.1)
            fetch = []
            with httpx.Client() as client:
                for _ in range(20):
                    started = time.perf_counter()
                    client.get(f"{url}/api/board")
                    fetch.append((time.perf_counter() - started) * 1000)
        finally:
            driver.quit()
    return page, watched, statistics.median(fetch)


def make_board(root: Path, tasks: int) -> None:
    layout = Layout(root).ensure()
    for index in range(tasks):
        status = "failed" if index % 10 == 3 else "success"
        finished_task(layout, f"task-{index:04d}", status, files_changed=["a.py"], insertions=3)


def page_load(root: Path, tasks: int, rounds: int) -> tuple[list[float], float, float]:
    loads = []
    with served(root) as url:
        time.sleep(3)  # the start's full read, and the watcher's first scan, are behind it
        fetch = []
        with httpx.Client() as client:
            for _ in range(5):
                started = time.perf_counter()
                client.get(f"{url}/api/board")
                fetch.append((time.perf_counter() - started) * 1000)
        driver = browser()
        try:
            for _ in range(rounds):
                driver.get("about:blank")
                driver.get(url + "/")
                deadline = time.monotonic() + 60
                while True:
                    done = driver.execute_script(
                        "const n = document.querySelectorAll('#task-rows tr').length;"
                        f"return n >= {tasks} ? performance.now() : null;"
                    )
                    if done is not None:
                        loads.append(done)
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit("the board did not load within 60 s")
                    time.sleep(0.01)
        finally:
            driver.quit()
    started = time.perf_counter()
    subprocess.run([str(VENV_BIN / "orchestrator"), "--root", str(root), "status", "--json"],
                   capture_output=True, check=True, env={**os.environ, "ORCHESTRATOR_BACKEND": "local"})
    status_ms = (time.perf_counter() - started) * 1000
    return loads, statistics.median(fetch), status_ms


def process_cost(pid: int, window_s: float) -> tuple[float, float]:
    """CPU percent over ``window_s`` and RSS in MB of ``pid`` (and its children)."""

    def cpu_ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    before = cpu_ticks()
    time.sleep(window_s)
    used = (cpu_ticks() - before) / CLK_TCK
    rss_kb = next(
        int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return 100 * used / window_s, rss_kb / 1024


def idle_cost(root: Path, window_s: float) -> tuple[tuple[float, float], tuple[float, float]]:
    env = {**os.environ, "ORCHESTRATOR_BACKEND": "local"}
    port_holder = served(root)
    url = port_holder.__enter__()
    try:
        pid = int(subprocess.run(["pgrep", "-f", f"dashboard --port {url.rsplit(':', 1)[1]}"],
                                 capture_output=True, text=True).stdout.split()[0])
        driver = browser()
        try:
            wait_live(driver, url)
            time.sleep(2)
            dashboard = process_cost(pid, window_s)
        finally:
            driver.quit()
    finally:
        port_holder.__exit__(None, None, None)
    watch = subprocess.Popen(
        [str(VENV_BIN / "orchestrator"), "--root", str(root), "watch", "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        time.sleep(3)
        watching = process_cost(watch.pid, window_s)
    finally:
        watch.terminate()
        watch.wait()
    return dashboard, watching


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of the idle window")
    parser.add_argument("--rounds", type=int, default=5, help="page loads")
    parser.add_argument("--quick", action="store_true", help="200 tasks, 20 changes, 10 s idle")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.changes, args.idle, args.rounds = 200, 20, 10.0, 3

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as scratch:
        page, watched, fetch_ms = change_latency(Path(scratch) / "changes", args.changes)
        print(f"\n### File change -> browser update ({args.changes} new task files, one every ~0.1 s)\n")
        print("| path | p50 | p99 | max |")
        print("|---|---|---|---|")
        print(f"| baseline: protocol watcher callback (inotify) | {statistics.median(watched):.1f} ms "
              f"| {percentile(watched, .99):.1f} ms | {max(watched):.1f} ms |")
        print(f"| dashboard: file -> row in Chromium's table | {statistics.median(page):.1f} ms "
              f"| {percentile(page, .99):.1f} ms | {max(page):.1f} ms |")
        print(f"| estimate: a page polling /api/board every 1 s | {500 + fetch_ms:.0f} ms (mean) | "
              f"~{1000 + fetch_ms:.0f} ms | |")
        print(f"\nadded by server, stream and page over the watcher, p50: "
              f"{statistics.median(page) - statistics.median(watched):.1f} ms")

        board = Path(scratch) / "board"
        started = time.perf_counter()
        make_board(board, args.tasks)
        print(f"\n(made {args.tasks} finished tasks in {time.perf_counter() - started:.1f} s)")
        loads, api_ms, status_ms = page_load(board, args.tasks, args.rounds)
        print(f"\n### Page load with {args.tasks:,} finished tasks ({args.rounds} loads)\n")
        print("| measure | median | ratio to the CLI |")
        print("|---|---|---|")
        print(f"| baseline: `orchestrator status --json` (process start included) | {status_ms:.0f} ms | 1.00 |")
        print(f"| `GET /api/board` (board held in memory) | {api_ms:.0f} ms | {api_ms / status_ms:.2f} |")
        print(f"| navigation start -> {args.tasks:,} rows in the table | {statistics.median(loads):.0f} ms "
              f"| {statistics.median(loads) / status_ms:.2f} |")

        (dash_cpu, dash_rss), (watch_cpu, watch_rss) = idle_cost(board, args.idle)
        print(f"\n### Idle with {args.tasks:,} finished tasks ({args.idle:g} s window)\n")
        print("| process | CPU | memory (RSS) |")
        print("|---|---|---|")
        print(f"| baseline: `orchestrator watch --json` | {watch_cpu:.2f} % | {watch_rss:.0f} MB |")
        print(f"| `orchestrator dashboard`, one page open | {dash_cpu:.2f} % | {dash_rss:.0f} MB |")


if __name__ == "__main__":
    threading.excepthook = lambda args: None
    main()
