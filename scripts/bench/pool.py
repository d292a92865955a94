"""Benchmark of the warm pool beside cold spawns, in the same run.

Run by hand (needs Docker and the worker image: scripts/build-images.sh --offline)::

    .venv/bin/python scripts/bench/pool.py [--quick] [--reps N] [--counts 8,16,50] [--task-seconds S]

It prints markdown tables (ready for the README):

1. Claim latency: from a task file's creation (``write_task``) to its claim (the claim's
   ``claimed_at``, written by the worker), and to its result, for a task taken by an idle pool
   worker (``orchestrator pool -n 4`` running; each rep waits for the pool to be full again)
   beside a cold spawn of the same task (``spawn_task`` called right after the write). Goal:
   warm p50 under 100 ms.
2. Fan-out: ``orchestrator run -n N`` of N ``sleep S`` tasks (``agent: command``), from launching
   the command to the last result, without a pool (N cold spawns) and with a pool of N idle
   workers started beforehand; the ratio is to one task's length (the ideal: every task in
   parallel with no overhead). Goal: 50 tasks within 1.5x with a pool of 50.

Everything runs in fresh temporary roots bind-mounted into the workers, with a local bare git
repository as the remote. ``$ORCHESTRATOR_WORKER_IMAGE`` names the image (default claude-worker).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from manager.backends import make_backend
from manager.config import resolve_settings
from manager.run.spawn import prepare_spawning, spawn_task
from orchestration_protocol import Claim, Layout, Result, Task, read_model, write_task
from orchestration_protocol.pool import PoolWorkerState, read_pool_workers
from scripts.bench.spawn import IMAGE, environment, make_remote, remove_workers

VENV_BIN = Path(sys.executable).parent
ORCHESTRATOR = str(VENV_BIN / "orchestrator")


def idle_count(layout: Layout) -> int:
    return sum(1 for r in read_pool_workers(layout) if r.state == PoolWorkerState.IDLE)


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def start_pool(env: dict[str, str], layout: Layout, size: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [ORCHESTRATOR, "pool", "-n", str(size), "--name", "bench"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: idle_count(layout) >= size, 60 + 3 * size, f"{size} idle pool workers")
    return process


def stop_pool(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


# --- 1. claim latency ----------------------------------------------------------------------------


def written_to_claim(layout: Layout, task_id: str, start) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Write a task, call ``start(task_id)``; (seconds to its claim, seconds to its result)."""
    written = datetime.now(UTC)
    write_task(layout, Task(id=task_id, prompt="true", agent="command"))
    start(task_id)
    claim_file = layout.claim_file(task_id, 1)
    wait_for(claim_file.exists, 60, f"{task_id}'s claim")
    claim = read_model(claim_file, Claim, task_id)
    wait_for(layout.result_file(task_id).exists, 120, f"{task_id}'s result")
    result = read_model(layout.result_file(task_id), Result, task_id)
    return (
        (claim.claimed_at - written).total_seconds(),
        (result.completed_at - written).total_seconds(),
    )


def bench_claim(env: dict[str, str], layout: Layout, reps: int) -> list[str]:
    os.environ.update(env)
    settings = resolve_settings(layout.root)
    backend = make_backend(settings.engine_config())
    context = prepare_spawning(settings, backend)
    cold = [written_to_claim(layout, f"cold-{n}", lambda t: spawn_task(context, t)) for n in range(reps)]
    pool = start_pool(env, layout, 4)
    warm = []
    try:
        for n in range(reps):
            wait_for(lambda: idle_count(layout) >= 4, 60, "a full pool")
            warm.append(written_to_claim(layout, f"warm-{n}", lambda _t: None))
    finally:
        stop_pool(pool)
        backend.close()
    lines = [
        "| task file written to | cold spawn p50 | p90 | warm pool p50 | p90 | cold / warm (p50) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for index, what in ((0, "its claim"), (1, "its result (`true`)")):
        c, w = [x[index] for x in cold], [x[index] for x in warm]
        lines.append(
            f"| {what} | {ms(statistics.median(c))} | {ms(percentile(c, 0.9))} "
            f"| {ms(statistics.median(w))} | {ms(percentile(w, 0.9))} "
            f"| {statistics.median(c) / statistics.median(w):.1f}x |"
        )
    return lines


# --- 2. fan-out ----------------------------------------------------------------------------------


def run_fanout(env: dict[str, str], layout: Layout, count: int, task_s: float) -> float:
    prompts = [f"sleep {task_s:g}" for _ in range(count)]
    launched = datetime.now(UTC)
    done = subprocess.run(
        [ORCHESTRATOR, "run", "--agent", "command", "-n", str(count), "--json", *prompts],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"fan-out {count} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    results = [
        Result.model_validate_json(path.read_bytes()) for path in layout.results_dir.glob("*.json")
    ]
    return (max(r.completed_at for r in results) - launched).total_seconds()


def bench_fanout(
    env: dict[str, str], directory: Path, counts: list[int], task_s: float, client
) -> list[str]:  # type: ignore[no-untyped-def]
    lines = [
        f"| tasks (`sleep {task_s:g}`, `-n` = tasks) | cold spawns | ratio | pool of N (started before) | ratio |",
        "|---:|---:|---:|---:|---:|",
    ]
    for count in counts:
        figures = []
        for warm in (False, True):
            root = directory / f"fanout-{count}-{'warm' if warm else 'cold'}"
            layout = Layout(root).ensure()
            run_env = {**env, "ORCHESTRATION_DIR": str(root)}
            pool = start_pool(run_env, layout, count) if warm else None
            try:
                figures.append(run_fanout(run_env, layout, count, task_s))
            finally:
                if pool is not None:
                    stop_pool(pool)
                remove_workers(client, root)
        cold, warm_s = figures
        lines.append(
            f"| {count} | {cold:.1f} s | {cold / task_s:.2f}x | {warm_s:.1f} s | {warm_s / task_s:.2f}x |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer reps, fan-out 8 only")
    parser.add_argument("--reps", type=int, default=None, help="claim reps (default 20, quick 5)")
    parser.add_argument("--counts", default=None, help="fan-out sizes (default 8,16,50)")
    parser.add_argument("--task-seconds", type=float, default=20.0, help="length of a fan-out task")
    parser.add_argument("--only", choices=["claim", "fanout"], action="append")
    args = parser.parse_args()
    reps = args.reps or (5 if args.quick else 20)
    counts = [int(c) for c in (args.counts or ("8" if args.quick else "8,16,50")).split(",")]
    client = docker.from_env()
    client.images.get(IMAGE)
    directory = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    root = directory / "root"
    layout = Layout(root).ensure()
    env = environment(root, make_remote(directory), directory)
    info = client.info()
    print(
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Docker {info.get('ServerVersion')} "
        f"({info.get('Driver')}), Python {platform.python_version()}, image {IMAGE}\n"
    )
    try:
        if not args.only or "claim" in args.only:
            print("### Claim latency (task file written to claim)\n")
            print("\n".join(bench_claim(env, layout, reps)) + "\n", flush=True)
        if not args.only or "fanout" in args.only:
            print("### Fan-out with and without a pool\n")
            print("\n".join(bench_fanout(env, directory, counts, args.task_seconds, client)) + "\n")
    finally:
        remove_workers(client, root)
        for path in directory.glob("fanout-*"):
            remove_workers(client, path)
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
