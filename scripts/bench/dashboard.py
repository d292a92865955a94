"""Benchmark of the dashboard: how fast a file change reaches the page, how fast boards of 1,000
to 100,000 tasks paint and follow a change, and what the dashboard costs while it is open.

Run by hand (needs Debian's chromium and chromium-driver, and selenium from the dev extras)::

    .venv/bin/python scripts/bench/dashboard.py [--tasks 1000,10000[,100000]] [--changes 50]
        [--state-changes 10] [--rounds 5] [--idle 20] [--skip-small] [--quick]

It prints markdown tables for docs/performance.md, with the load average at the start, after
each root is made, and at the end:

1. File change -> browser update, on a small root. The bench stamps the moment it starts writing
   a task file (``write_task``: temp file, fsync, link into place); in the page, a
   MutationObserver stamps the moment the task's row was put into the table. Both stamps are
   wall-clock milliseconds of the same machine (``time.time()`` and ``performance.timeOrigin +
   performance.now()``). Baseline in the same run: the protocol watcher's own callback
   (inotify), and what a page polling ``/api/board`` every second would see on average.
2. Boards of each ``--tasks`` size, made by ``scripts/bench/read_model.py``'s ``make_root``
   (half ended with a result, one in ten of those failed; half pending), each served by its own
   ``orchestrator dashboard``:

   - baseline: ``orchestrator status --json`` on the same root (wall and CPU seconds, bytes);
   - the dashboard's start (its full read) and ``GET /api/board`` (median ms, bytes);
   - **first paint of the table**: from navigation start (``performance.timeOrigin``) to the
     frame after the moment both the table's first row (``#task-rows tr``) and the counts
     header (``#counts .chip``) are in the DOM; a probe put into the page before its own script
     (``Page.addScriptToEvaluateOnNewDocument``) watches the DOM with a MutationObserver and
     stamps ``requestAnimationFrame`` then ``setTimeout`` (the frame that shows them is done);
   - **complete board**: navigation start to the same kind of frame after the page's
     ``board-rendered`` mark (everything the first message holds is drawn: counts, timeline,
     the first page of rows; a page that draws every row draws them all first);
   - **a state change on the page**: a pending task (in the first page) is claimed and its first
     heartbeat written, as a worker starts (``try_claim_attempt``, ``heartbeat``), until its row
     shows ``running``; then its result (``publish_result``), until the success count is one
     more and no row shows the task in another state; stamps as in 1;
   - a task far down: its id typed into the filter box until its row shows, and the table
     scrolled to its end until more rows show (a page that holds every row skips these);
   - idle with one page open: the dashboard's CPU and RSS; baseline ``orchestrator watch
     --json`` on the same root.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    WorkerPhase,
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
def served(root: Path) -> Iterator[tuple[str, int]]:
    """``orchestrator --root ROOT dashboard`` on a free port, in its own process; yields its URL
    and process id."""
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
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

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
    with served(root) as (url, _pid), watcher:
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


PAINT_PROBE = """
window.__paint = null;
window.__stamps = {};
window.__watch = {};
const paintProbe = new MutationObserver(() => {
  const now = performance.timeOrigin + performance.now();
  for (const [key, test] of Object.entries(window.__watch)) {
    if (!(key in window.__stamps) && test()) window.__stamps[key] = now;
  }
  if (window.__paintSeen) return;
  if (document.querySelector('#task-rows tr') && document.querySelector('#counts .chip')) {
    window.__paintSeen = true;
    requestAnimationFrame(() => setTimeout(() => { window.__paint = performance.now(); }));
  }
});
paintProbe.observe(document, {childList: true, subtree: true, characterData: true});
window.__complete = null;
new PerformanceObserver((list) => {
  if (list.getEntries().some((entry) => entry.name === 'board-rendered') && window.__complete === null) {
    window.__complete = 0;
    requestAnimationFrame(() => setTimeout(() => { window.__complete = performance.now(); }));
  }
}).observe({type: 'mark'});
"""
"""Put into every page before its own script (the DevTools protocol's
``Page.addScriptToEvaluateOnNewDocument``): it stamps the first paint of the table, and the
moments the conditions the bench registers in ``window.__watch`` first hold."""


@dataclass
class LargeBoard:
    """What one root size measured."""

    tasks: int
    made_s: float = 0.0
    status_s: float = 0.0
    status_cpu_s: float = 0.0
    status_bytes: int = 0
    ready_s: float = 0.0
    api_ms: float = 0.0
    api_bytes: int = 0
    first_paint: list[float] = field(default_factory=list)
    complete: list[float] = field(default_factory=list)
    claimed: list[float] = field(default_factory=list)
    ended: list[float] = field(default_factory=list)
    searched: list[float] = field(default_factory=list)
    scrolled: list[float] = field(default_factory=list)
    page_cpu_ms: list[float] = field(default_factory=list)
    """The renderer's main thread, CPU ms per page load (Chromium's ``ThreadTime``)."""
    load_server_cpu_ms: list[float] = field(default_factory=list)
    """The dashboard process, CPU ms per page load."""
    nodes: int = 0
    """Elements in the loaded page's document."""
    change_server_cpu_ms: float = 0.0
    """The dashboard process, CPU ms per state change (its idle share included)."""
    idle: tuple[float, float] = (0.0, 0.0)
    watch: tuple[float, float] = (0.0, 0.0)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def page_metrics(driver) -> dict[str, float]:  # type: ignore[no-untyped-def]
    metrics = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    return {metric["name"]: metric["value"] for metric in metrics}


def timed_status(root: Path, board: LargeBoard) -> None:
    """``orchestrator status --json`` on the root: wall seconds, CPU seconds, bytes out."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [str(VENV_BIN / "orchestrator"), "--root", str(root), "status", "--json"],
        capture_output=True, env={**os.environ, "ORCHESTRATOR_BACKEND": "local"},
    )
    board.status_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    board.status_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    board.status_bytes = len(done.stdout)
    if done.returncode not in (0, 1):
        raise SystemExit(f"orchestrator status --json failed: {done.stderr[-2000:]!r}")


def page_stamp(driver, key: str, timeout_s: float = 30) -> float:  # type: ignore[no-untyped-def]
    """Wall-clock ms at which ``test`` (a JS expression) first held in the page."""
    deadline = time.monotonic() + timeout_s
    while (stamp := driver.execute_script(f"return window.__stamps[{key!r}]")) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"the page did not show {key} within {timeout_s:g} s")
        time.sleep(0.005)
    return float(stamp)


def watch_for(driver, key: str, test: str) -> None:  # type: ignore[no-untyped-def]
    """Register ``test`` (a JS expression); the probe stamps the first mutation after which it
    holds (checked at once too, in case it holds already)."""
    driver.execute_script(
        f"window.__watch[{key!r}] = () => ({test});"
        f"if (window.__watch[{key!r}]()) window.__stamps[{key!r}] = performance.timeOrigin + performance.now();"
    )


def chip(state: str) -> str:
    return f"Number((document.querySelector('#counts .chip.s-{state} .n') || {{}}).textContent || 0)"


def row_test(task_id: str, state: str) -> str:
    return f"!!document.querySelector('#task-rows tr[data-id=\"{task_id}\"] .state.s-{state}')"


def state_changes(driver, layout: Layout, pending: list[str], board: LargeBoard) -> None:  # type: ignore[no-untyped-def]
    """Each pending task in turn: claimed and its first heartbeat written, as a worker starts
    (the page must show its row as running), then its result (the page's counts must show it ended, and no row may still show it running)."""
    for task_id in pending:
        success = int(driver.execute_script(f"return {chip('success')}"))
        watch_for(driver, f"claim-{task_id}", row_test(task_id, "running"))
        written = time.time() * 1000
        handle = try_claim_attempt(layout, task_id, 1, worker_id=f"bench-{task_id}")
        assert handle is not None, task_id
        handle.heartbeat(WorkerPhase.RUNNING)  # as a worker does at once: the claim has no event
        board.claimed.append(page_stamp(driver, f"claim-{task_id}") - written)
        ended_test = (
            f"{chip('success')} === {success + 1} && "
            f"!document.querySelector('#task-rows tr[data-id=\"{task_id}\"] .state:not(.s-success)')"
        )
        watch_for(driver, f"end-{task_id}", ended_test)
        written = time.time() * 1000
        handle.publish_result(Result(task_id=task_id, status=ResultStatus.SUCCESS, completed_at=utc_now()))
        board.ended.append(page_stamp(driver, f"end-{task_id}") - written)
        time.sleep(0.2)


def far_down(driver, tasks: int, board: LargeBoard, rounds: int) -> None:  # type: ignore[no-untyped-def]
    """A task at the far end of the list: found by typing its id into the search box, and the
    next page of rows after scrolling the table to its end (the page fetches it on demand)."""
    if not driver.execute_script("return !!document.getElementById('more')"):
        return  # a page that holds every row already has nothing to fetch
    box = driver.find_element("id", "search")
    for attempt in range(rounds):
        task_id = f"task-{tasks - 2 - 2 * attempt:06d}"
        watch_for(driver, f"search-{task_id}", f"!!document.querySelector('#task-rows tr[data-id=\"{task_id}\"]')")
        typed = time.time() * 1000
        box.clear()
        box.send_keys(task_id)
        board.searched.append(page_stamp(driver, f"search-{task_id}") - typed)
    box.clear()
    driver.execute_script("document.getElementById('search').dispatchEvent(new Event('input'))")
    time.sleep(1)
    for attempt in range(rounds):
        count = int(driver.execute_script("return document.querySelectorAll('#task-rows tr').length"))
        watch_for(driver, f"scroll-{attempt}", f"document.querySelectorAll('#task-rows tr').length > {count}")
        scrolled = time.time() * 1000
        driver.execute_script("const w = document.querySelector('.tasks-card .table-wrap'); w.scrollTop = w.scrollHeight;")
        board.scrolled.append(page_stamp(driver, f"scroll-{attempt}") - scrolled)
        time.sleep(0.3)


def large_board(directory: Path, tasks: int, rounds: int, changes: int, idle_s: float) -> LargeBoard:
    """Everything measured on a root of ``tasks`` tasks made by read_model.py's ``make_root``."""
    from scripts.bench.read_model import make_root  # here: read_model imports this module

    board = LargeBoard(tasks)
    root = directory / f"board-{tasks}"
    started = time.perf_counter()
    layout = make_root(root, tasks)
    board.made_s = time.perf_counter() - started
    timed_status(root, board)
    started = time.perf_counter()
    with served(root) as (url, pid):
        with httpx.Client(timeout=300) as client:
            client.get(f"{url}/api/board")  # answers once the start's full read is done
            board.ready_s = time.perf_counter() - started
            fetch = []
            for _ in range(5):
                started = time.perf_counter()
                answer = client.get(f"{url}/api/board")
                fetch.append((time.perf_counter() - started) * 1000)
            board.api_ms, board.api_bytes = statistics.median(fetch), len(answer.content)
        driver = browser()
        try:
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PAINT_PROBE})
            driver.execute_cdp_cmd("Performance.enable", {})
            for _ in range(rounds):
                driver.get(url + "/healthz")  # the same site: the same renderer, whose CPU counts on
                before = page_metrics(driver)
                server_before = cpu_seconds(pid)
                driver.get(url + "/")
                deadline = time.monotonic() + 120
                while True:
                    paint, rendered = driver.execute_script(
                        "return [window.__paint, window.__complete];"
                    )
                    if paint is not None and rendered:
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"the board of {tasks:,} tasks did not paint within 120 s")
                    time.sleep(0.01)
                board.first_paint.append(paint)
                board.complete.append(rendered)
                after = page_metrics(driver)
                board.page_cpu_ms.append((after["ThreadTime"] - before["ThreadTime"]) * 1000)
                board.load_server_cpu_ms.append((cpu_seconds(pid) - server_before) * 1000)
                board.nodes = int(driver.execute_script("return document.querySelectorAll('*').length"))
            wait_live(driver, url)
            time.sleep(1)
            pending = [f"task-{index:06d}" for index in range(1, 2 * changes, 2)]
            server_before = cpu_seconds(pid)
            state_changes(driver, layout, pending, board)
            board.change_server_cpu_ms = (cpu_seconds(pid) - server_before) * 1000 / (2 * len(pending))
            far_down(driver, tasks, board, min(rounds, 5))
            time.sleep(2)
            board.idle = process_cost(pid, idle_s)
        finally:
            driver.quit()
    board.watch = watch_cost(root, idle_s)
    shutil.rmtree(root, ignore_errors=True)
    return board


def ms_cell(values: list[float], share: float = 0.5) -> str:
    return f"{percentile(values, share):,.0f} ms" if values else "-"


def print_large(boards: list[LargeBoard]) -> None:
    sizes = " | ".join(f"{board.tasks:,} tasks" for board in boards)
    ratio = len(boards) > 1
    head = f"| measure | {sizes} |" + (" ratio last/first |" if ratio else "")
    print(head)
    print("|---" * (head.count("|") - 1) + "|")

    def line(name: str, cells: list[str], values: list[float] | None = None) -> None:
        tail = ""
        if ratio and values and values[0]:
            tail = f" {values[-1] / values[0]:.1f}x |"
        elif ratio:
            tail = " |"
        print(f"| {name} | {' | '.join(cells)} |{tail}")

    line("baseline: `orchestrator status --json` (wall, process start included)",
         [f"{b.status_s:.2f} s" for b in boards], [b.status_s for b in boards])
    line("baseline: `orchestrator status --json` (CPU seconds)",
         [f"{b.status_cpu_s:.2f} s" for b in boards], [b.status_cpu_s for b in boards])
    line("baseline: `orchestrator status --json` (bytes)",
         [f"{b.status_bytes / 1e6:.1f} MB" for b in boards], [b.status_bytes for b in boards])
    line("dashboard start -> first `/api/board` answer (the start's full read)",
         [f"{b.ready_s:.1f} s" for b in boards], [b.ready_s for b in boards])
    line("`GET /api/board` (median of 5)", [f"{b.api_ms:.0f} ms" for b in boards], [b.api_ms for b in boards])
    line("`GET /api/board` (bytes)", [f"{b.api_bytes / 1e3:,.0f} kB" for b in boards], [b.api_bytes for b in boards])
    line("navigation -> first paint of the table (median)", [ms_cell(b.first_paint) for b in boards],
         [statistics.median(b.first_paint) for b in boards])
    line("navigation -> complete board (median)", [ms_cell(b.complete) for b in boards],
         [statistics.median(b.complete) for b in boards])
    line(
        "page load: the renderer's main thread, CPU (median)",
        [ms_cell(b.page_cpu_ms) for b in boards],
        [statistics.median(b.page_cpu_ms) for b in boards],
    )
    line(
        "page load: the dashboard process, CPU (median)",
        [ms_cell(b.load_server_cpu_ms) for b in boards],
        [statistics.median(b.load_server_cpu_ms) for b in boards],
    )
    line("elements in the loaded page", [f"{b.nodes:,}" for b in boards], [b.nodes for b in boards])
    line("claim written -> row shown running (p50)", [ms_cell(b.claimed) for b in boards])
    line("claim written -> row shown running (max)", [ms_cell(b.claimed, 1) for b in boards])
    line("result written -> counts and row show it ended (p50)", [ms_cell(b.ended) for b in boards])
    line("result written -> counts and row show it ended (max)", [ms_cell(b.ended, 1) for b in boards])
    line(
        "state change: the dashboard process, CPU per change (idle share included)",
        [f"{b.change_server_cpu_ms:,.0f} ms" for b in boards],
        [b.change_server_cpu_ms for b in boards],
    )
    line("id typed into the search -> that far-down row shown (p50)", [ms_cell(b.searched) for b in boards])
    line("table scrolled to its end -> the next rows shown (p50)", [ms_cell(b.scrolled) for b in boards])
    line("idle, one page open: dashboard CPU / RSS",
         [f"{b.idle[0]:.2f} % / {b.idle[1]:.0f} MB" for b in boards])
    line("idle baseline: `orchestrator watch --json` CPU / RSS",
         [f"{b.watch[0]:.2f} % / {b.watch[1]:.0f} MB" for b in boards])


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


def watch_cost(root: Path, window_s: float) -> tuple[float, float]:
    """The baseline of the idle cost: ``orchestrator watch --json`` on the same root, measured
    once it printed its first board."""
    watch = subprocess.Popen(
        [str(VENV_BIN / "orchestrator"), "--root", str(root), "watch", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "ORCHESTRATOR_BACKEND": "local"},
    )
    try:
        assert watch.stdout is not None
        watch.stdout.readline()
        drain = threading.Thread(target=watch.stdout.read, daemon=True)
        drain.start()
        time.sleep(2)
        return process_cost(watch.pid, window_s)
    finally:
        watch.terminate()
        watch.wait()


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="1000,10000",
                        help="root sizes, comma-separated (default 1000,10000; 100000 takes minutes)")
    parser.add_argument("--changes", type=int, default=50, help="new task files on a small root")
    parser.add_argument("--state-changes", type=int, default=10, help="pending tasks claimed and ended per size")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of the idle window")
    parser.add_argument("--rounds", type=int, default=5, help="page loads per size")
    parser.add_argument("--skip-small", action="store_true", help="leave out the new-file latency")
    parser.add_argument("--quick", action="store_true", help="200 and 2,000 tasks, 20 changes, 5 s idle")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.changes, args.idle, args.rounds, args.state_changes = "200,2000", 20, 5.0, 3, 5
    sizes = [int(size) for size in args.tasks.split(",")]
    print(f"Start: {load_line()}")

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as scratch:
        if not args.skip_small:
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
                  f"{statistics.median(page) - statistics.median(watched):.1f} ms ({load_line()})")

        boards = []
        for size in sizes:
            boards.append(large_board(Path(scratch), size, args.rounds, args.state_changes, args.idle))
            board = boards[-1]
            print(f"\n(made {size:,} tasks, half ended and half pending, in {board.made_s:.1f} s; "
                  f"{load_line()})", flush=True)
        print(f"\n### Boards of {', '.join(f'{size:,}' for size in sizes)} tasks (half ended, half pending; "
              f"{args.rounds} page loads, {args.state_changes} state changes each)\n")
        print_large(boards)
    print(f"\nEnd: {load_line()}")


if __name__ == "__main__":
    threading.excepthook = lambda args: None
    main()
