"""Benchmark of the read model: ``orchestrator status --json`` on roots of 10,000 and 100,000
tasks (half ended with a result, half pending), beside what Python takes to read and parse the
same files (``json.loads`` of each, no model), and after ``orchestrator archive`` moved the ended
ones out of the hot set.

Run by hand::

    .venv/bin/python scripts/bench/read_model.py [--tasks 10000,100000] [--reps 3]

The roots are made by copying the files of one task that a real worker protocol wrote
(``write_task``, claim, heartbeat, result) with the id replaced, so making 100,000 takes seconds,
not the hours of fsyncs. The load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from orchestration_protocol import Layout, Task, write_task
from scripts.bench.dashboard import finished_task  # the benches share it; none imports tests/

VENV_BIN = Path(sys.executable).parent
TEMPLATE_ID = "template-task-000000"


def make_root(root: Path, tasks: int) -> Layout:
    """``tasks`` tasks: even indexes ended (success, or failed one in ten), odd ones pending."""
    layout = Layout(root).ensure()
    scratch = Layout(root.parent / f"{root.name}-template").ensure()
    finished_task(scratch, TEMPLATE_ID, "success", files_changed=["a.py"], insertions=3)
    write_task(scratch, Task(id=TEMPLATE_ID.replace("task", "todo"), prompt="pending"))
    ended = {
        path.relative_to(scratch.root): path.read_text()
        for path in scratch.root.rglob("*")
        if path.is_file() and TEMPLATE_ID in str(path)
    }
    pending = scratch.task_file(TEMPLATE_ID.replace("task", "todo")).read_text()
    for index in range(tasks):
        task_id = f"task-{index:06d}"
        if index % 2:
            layout.task_file(task_id).write_text(pending.replace(TEMPLATE_ID.replace("task", "todo"), task_id))
            continue
        for relative, text in ended.items():
            target = root / str(relative).replace(TEMPLATE_ID, task_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            body = text.replace(TEMPLATE_ID, task_id)
            if index % 20 == 6 and relative.parts[0] == "results":
                body = body.replace('"success"', '"failed"')
            target.write_text(body)
    shutil.rmtree(scratch.root)
    return layout


def bare_parse(root: Path) -> float:
    """Seconds to read and ``json.loads`` every protocol file of the root (the floor)."""
    started = time.perf_counter()
    for directory, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".json"):
                with open(os.path.join(directory, name), "rb") as handle:
                    json.loads(handle.read())
    return time.perf_counter() - started


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def bench(directory: Path, tasks: int, reps: int) -> list[str]:
    root = directory / f"root-{tasks}"
    layout = make_root(root, tasks)
    env = {**os.environ, "ORCHESTRATION_DIR": str(root), "ORCHESTRATOR_BACKEND": "local"}
    status = [str(VENV_BIN / "orchestrator"), "--root", str(root), "status", "--json"]
    bare = statistics.median(bare_parse(root) for _ in range(reps))
    hot = statistics.median(timed(status, env) for _ in range(reps))
    lines = [
        f"| {tasks:,} tasks | `status --json` | {hot:.2f} s | bare read + `json.loads` | {bare:.2f} s | {hot / bare:.1f}x |"
    ]
    archive = [str(VENV_BIN / "orchestrator"), "--root", str(root), "archive", "--json"]
    archived = timed(archive, env)
    after = statistics.median(timed(status, env) for _ in range(reps))
    lines.append(
        f"| {tasks:,} tasks, ended ones archived ({archived:.1f} s) | `status --json` | {after:.2f} s "
        f"| bare read + `json.loads` | {statistics.median(bare_parse(layout.tasks_dir.parent / 'tasks') for _ in range(reps)):.2f} s | |"
    )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="10000,100000", help="root sizes (default 10000,100000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each timing")
    parser.add_argument("--keep", action="store_true", help="keep the roots (prints where)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-read-"))
    load = os.getloadavg()
    print(f"Machine: {os.cpu_count()} CPUs; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| root | command | time (median) | baseline | time | ratio |")
    print("|---|---|---:|---|---:|---:|")
    try:
        for tasks in (int(n) for n in args.tasks.split(",")):
            print("\n".join(bench(directory, tasks, args.reps)), flush=True)
    finally:
        if args.keep:
            print(f"roots kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    load = os.getloadavg()
    print(f"\nLoad average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
