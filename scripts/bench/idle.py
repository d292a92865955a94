"""Benchmark of idle followers on a big root: what ``orchestrator dispatch``, ``watch --json``,
``wait <one task>`` and the dashboard cost while nothing happens, and what one task's change
makes each of them touch, beside the protocol watcher alone in the same run.

Run by hand::

    .venv/bin/python scripts/bench/idle.py [--tasks 1000,10000] [--window 60] [--no-dashboard]

Each root is made by ``make_root`` (``scripts/bench/read_model.py``: half the tasks ended with a
result, half pending), and every pending task is then made to wait on ``gate``, a task claimed
by a worker elsewhere whose lease runs for a day: so the dispatcher (local engine) has nothing
it can start, and ``wait`` (on one pending task) and ``watch`` have nothing settled to stop on.

Two passes per root, the processes started together and left to finish their start-up (until
each uses less than 10 % of a CPU over 5 s):

1. CPU and memory: CPU seconds (``/proc/<pid>/stat``, user + system) over an idle window,
   as a percentage of the window, and the resident set at its end.
2. Touches: ``strace -f`` attached to every process after its start-up, counting
   ``openat``/``stat``-family calls and directory listings (``getdents64``) per idle minute
   and, after one heartbeat of ``gate`` (its status file replaced, as a worker does), within the
   following window; split into the changed task's files, other tasks' files, and the rest
   (directories, the process's own files).

The load average is printed beside the figures: the counts do not depend on it, the CPU
percentages a little.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from orchestration_protocol import Layout, Task, WorkerPhase, utc_now
from orchestration_protocol.claims import try_claim_attempt
from orchestration_protocol.files import atomic_write_bytes
from scripts.bench.read_model import make_root

VENV_BIN = Path(sys.executable).parent
ORCHESTRATOR = str(VENV_BIN / "orchestrator")
GATE = "gate"
WAITED = "task-000001"
"""The task ``wait`` waits for (pending, behind the gate)."""
TRACED = "openat,open,stat,lstat,newfstatat,statx,getdents64"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def make_idle_root(root: Path, tasks: int) -> Layout:
    """``make_root``'s tasks, the pending ones waiting on ``gate`` (running elsewhere)."""
    layout = make_root(root, tasks)
    for path in layout.tasks_dir.glob("*.json"):
        task = Task.model_validate_json(path.read_bytes())
        if task.prompt == "pending":
            atomic_write_bytes(path, task.model_copy(update={"depends_on": [GATE]}).to_json_bytes())
    atomic_write_bytes(layout.task_file(GATE), Task(id=GATE, prompt="gate").to_json_bytes())
    heartbeat(layout)
    return layout


def heartbeat(layout: Layout) -> None:
    """One heartbeat of ``gate``'s worker (claimed first if needed), its lease a day long."""
    handle = try_claim_attempt(layout, GATE, 1, worker_id="elsewhere", lease_s=86400)
    if handle is None:
        from orchestration_protocol.claims import ClaimHandle
        from orchestration_protocol.files import read_model
        from orchestration_protocol.models import Claim

        handle = ClaimHandle(layout, read_model(layout.claim_file(GATE, 1), Claim, GATE))
    handle.heartbeat(WorkerPhase.RUNNING, now=utc_now())


# --- the processes ------------------------------------------------------------------------------


def bare_watcher(root: Path) -> None:
    """The protocol watcher alone, its callback doing nothing (``--bare-watcher ROOT``)."""
    from orchestration_protocol import ProtocolWatcher

    with ProtocolWatcher(root, lambda _event: None):
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def commands(root: Path, dashboard: bool) -> dict[str, list[str]]:
    base = [ORCHESTRATOR, "--root", str(root)]
    chosen = {
        "baseline: protocol watcher alone": [sys.executable, __file__, "--bare-watcher", str(root)],
        "`dispatch -n 4`": [*base, "dispatch", "-n", "4"],
        "`watch --json`": [*base, "watch", "--json"],
        f"`wait {WAITED}`": [*base, "wait", WAITED],
    }
    if dashboard:
        chosen["`dashboard` (no page open)"] = [*base, "dashboard", "--port", str(free_port())]
    return chosen


@dataclass
class Running:
    name: str
    process: subprocess.Popen[bytes]
    log: Path | None = None
    tracer: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


def start(name: str, command: list[str], env: dict[str, str]) -> Running:
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return Running(name, process)


def trace(item: Running, log: Path) -> None:
    """Attach strace to the process, all its threads and what it starts from now on."""
    item.log = log
    item.tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-ttt", "-e", f"trace={TRACED}", "-o", str(log), "-p", str(item.pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def settle(running: list[Running], timeout_s: float = 300) -> dict[str, float]:
    """Wait until each process's start-up is done: under 10 % of a CPU over 5 seconds (a
    follower that rescans every few seconds never has 5 quiet ones), then 5 s more; per
    process, the seconds that took."""
    started = time.monotonic()
    samples: dict[str, list[float]] = {item.name: [] for item in running}
    took: dict[str, float] = {}
    while len(took) < len(running):
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"the processes did not settle within {timeout_s:.0f} s")
        for item in running:
            if item.process.poll() is not None:
                raise SystemExit(f"{item.name} exited with {item.process.returncode} at start-up")
            if item.name in took:
                continue
            seen = samples[item.name]
            seen.append(cpu_seconds(item.pid))
            if len(seen) > 5 and seen[-1] - seen[-6] < 0.5:
                took[item.name] = time.monotonic() - started - 5
        time.sleep(1)
    time.sleep(5)
    return took


def stop(running: list[Running]) -> None:
    for item in running:
        if item.tracer is not None:  # detach first: the log ends before the process does
            item.tracer.send_signal(signal.SIGINT)
            item.tracer.wait(timeout=20)
    for item in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(item.process.pid, signal.SIGTERM)
    for item in running:
        try:
            item.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(item.process.pid, signal.SIGKILL)
            item.process.wait()


# --- the counts ---------------------------------------------------------------------------------

LINE = re.compile(r"^\d+\s+(?P<t>\d+\.\d+) (?P<call>\w+)\((?P<args>.*)")
PATH = re.compile(r'"([^"]*)"')


@dataclass
class Touches:
    """Opens and stats (and listings) in one window, by whose files they were."""

    changed: int = 0
    """Of the changed task's files."""
    others: int = 0
    """Of other tasks' files (protocol files of tasks that did not change)."""
    rest: int = 0
    """Directories, the process's own files."""
    listings: int = 0
    """``getdents64`` calls."""
    by_call: Counter[str] = field(default_factory=Counter)


def task_of(path: str, root: str) -> str | None:
    if not path.startswith(root + "/"):
        return None
    parts = path[len(root) + 1:].split("/")
    if len(parts) == 2 and parts[0] in ("tasks", "status", "results", "control", "logs"):
        return parts[1].rsplit(".", 1)[0] if "." in parts[1] else None
    if len(parts) >= 2 and parts[0] in ("claims", "rounds") and (len(parts) == 3 or parts[1]):
        return parts[1]
    return None


def count(log: Path, root: str, since: float, until: float, changed: str) -> Touches:
    touches = Touches()
    for line in log.read_text(errors="replace").splitlines():
        match = LINE.match(line)
        if match is None or not since <= float(match["t"]) < until:
            continue
        call = match["call"]
        touches.by_call[call] += 1
        if call == "getdents64":
            touches.listings += 1
            continue
        found = PATH.search(match["args"])
        task = task_of(found.group(1), root) if found else None
        if task == changed:
            touches.changed += 1
        elif task is not None:
            touches.others += 1
        else:
            touches.rest += 1
    return touches


# --- one root -----------------------------------------------------------------------------------


def environment(root: Path, directory: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ORCHESTRATION_DIR": str(root),
        "ORCHESTRATOR_BACKEND": "local",
        "ORCHESTRATOR_BOARD_CACHE_DIR": str(directory / "board-cache"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def cpu_pass(root: Path, env: dict[str, str], window: float, dashboard: bool) -> list[tuple[str, float, float, float]]:
    """Per process: (name, start-up s, idle CPU %, RSS MB)."""
    running = [start(name, command, env) for name, command in commands(root, dashboard).items()]
    try:
        took = settle(running)
        before = {item.name: cpu_seconds(item.pid) for item in running}
        time.sleep(window)
        return [
            (item.name, took[item.name], 100 * (cpu_seconds(item.pid) - before[item.name]) / window, rss_mb(item.pid))
            for item in running
        ]
    finally:
        stop(running)


def touch_pass(
    root: Path, env: dict[str, str], directory: Path, window: float, after_change: float, dashboard: bool
) -> list[tuple[str, Touches, Touches]]:
    """Per process: (name, touches in the idle window, touches after one heartbeat of gate),
    strace attached once the process's start-up is done."""
    logs = directory / "strace"
    logs.mkdir(exist_ok=True)
    running = [start(name, command, env) for name, command in commands(root, dashboard).items()]
    try:
        settle(running)
        for index, item in enumerate(running):
            trace(item, logs / f"{index}.log")
        time.sleep(2)  # attached
        idle_from = time.time()
        time.sleep(window)
        changed_at = time.time()
        heartbeat(Layout(root))
        time.sleep(after_change)
        until = time.time()
    finally:
        stop(running)
    resolved = str(root.resolve())
    return [
        (
            item.name,
            count(item.log, resolved, idle_from, changed_at, GATE),
            count(item.log, resolved, changed_at, until, GATE),
        )
        for item in running
        if item.log is not None
    ]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def bench(directory: Path, tasks: int, window: float, after_change: float, dashboard: bool) -> None:
    root = directory / f"root-{tasks}"
    made = time.monotonic()
    make_idle_root(root, tasks)
    env = environment(root, directory)
    print(f"\n### {tasks:,} tasks (+ gate), made in {time.monotonic() - made:.0f} s; load {load()}\n")
    cpu = cpu_pass(root, env, window, dashboard)
    print(f"CPU over an idle window of {window:.0f} s (load at its end {load()}):\n")
    print("| process | start-up (s) | idle CPU | ratio to the watcher alone | RSS |")
    print("|---|---:|---:|---:|---:|")
    floor = max(cpu[0][2], 0.01)
    for name, took, percent, rss in cpu:
        print(f"| {name} | {took:.0f} | {percent:.2f} % | {percent / floor:.1f}x | {rss:.0f} MB |")
    touched = touch_pass(root, env, directory, window, after_change, dashboard)
    per_minute = 60 / window
    print(
        f"\nOpens and stats under strace: per idle minute, and in the {after_change:.0f} s after one "
        f"heartbeat of `{GATE}` (load {load()}):\n"
    )
    print(
        "| process | idle: other tasks' files /min | idle: listings /min | idle: rest /min "
        "| change: the changed task's files | change: other tasks' files | change: listings |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, idle, change in touched:
        print(
            f"| {name} | {idle.others * per_minute:.0f} | {idle.listings * per_minute:.0f} "
            f"| {idle.rest * per_minute:.0f} | {change.changed} | {change.others} | {change.listings} |"
        )


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--bare-watcher":
        bare_watcher(Path(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="1000,10000", help="root sizes (default 1000,10000)")
    parser.add_argument("--window", type=float, default=60.0, help="idle window in seconds (default 60)")
    parser.add_argument("--after-change", type=float, default=15.0, help="window after the change (default 15 s)")
    parser.add_argument("--no-dashboard", action="store_true", help="leave the dashboard out")
    parser.add_argument("--keep", action="store_true", help="keep the roots and strace logs")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        raise SystemExit("strace is not installed; install Debian's strace package.")
    directory = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    print(f"Machine: {os.cpu_count()} CPUs; load average {load()}; started {utc_now():%Y-%m-%d %H:%M} UTC")
    try:
        for tasks in (int(n) for n in args.tasks.split(",")):
            bench(directory, tasks, args.window, args.after_change, not args.no_dashboard)
    finally:
        if args.keep:
            print(f"\nkept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    print(f"\nLoad average at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
