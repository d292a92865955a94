"""Benchmark of the manager: spawn overhead, fan-out makespan, and the manager's own cost.

Run by hand (needs Docker and the claude-worker image: scripts/build-images.sh --offline)::

    .venv/bin/python scripts/bench/spawn.py [--quick] [--reps N] [--window S]

It prints markdown tables (ready for the README):

1. Spawn overhead: from calling the Docker spawner (``spawn_task``: preflight, container create,
   start) to the worker's first heartbeat in ``status/<id>.json``, beside a
   bare ``docker run --rm --entrypoint true claude-worker`` in the same run.
2. Fan-out makespan: ``orchestrator run --max-workers N`` of N fixed-length tasks
   (``agent: command``, ``sleep 5``: sleep-bound, no model) for N = 1, 4, 8, 16, against the ideal
   (one task's time: every task in parallel with no overhead).
3. The manager's CPU and memory: ``orchestrator dispatch`` idle on an empty root, and
   ``orchestrator dispatch`` / ``watch`` / ``watch --json`` on a root of 1,000 finished tasks,
   measured from /proc over a window after start-up.

Everything runs in a fresh temporary root bind-mounted into the workers, with a local bare git
repository as the remote, which the manager mirrors into the root. Default run: about 4 minutes; --quick:
about 1.5 minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from manager.backends import make_backend
from manager.config import resolve_settings
from manager.run.spawn import prepare_spawning, spawn_task
from orchestration_protocol import (
    Layout,
    Result,
    ResultStatus,
    Task,
    claim_task,
    utc_now,
    write_task,
)

IMAGE = os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker"
VENV_BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")
TITLES = {
    "spawn": "Spawn overhead",
    "fanout": "Fan-out makespan",
    "manager": "Manager CPU and memory",
}


def make_remote(directory: Path) -> Path:
    """A bare repository with one commit, owned by the workers' uid 1000."""
    remote, seed = directory / "remote.git", directory / "seed"
    git = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(
        ["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True
    )
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(seed)], check=True)
    (seed / "README.md").write_text("# bench\n")
    subprocess.run([*git, "-C", str(seed), "add", "."], check=True)
    subprocess.run([*git, "-C", str(seed), "commit", "-q", "-m", "init"], check=True)
    subprocess.run([*git, "-C", str(seed), "push", "-q", str(remote), "main"], check=True)
    return remote


def environment(root: Path, remote: Path, directory: Path) -> dict[str, str]:
    profiles = directory / "profiles.yaml"
    profiles.write_text(f"default:\n  image: {IMAGE}\n")
    return {
        **os.environ,
        "ORCHESTRATION_DIR": str(root),
        "ORCHESTRATOR_PROFILES": str(profiles),
        "ORCHESTRATOR_BACKEND": "docker",
        "REPO_URL": str(remote),
    }


def remove_workers(client: docker.DockerClient, root: Path) -> None:
    label = f"orchestrator.root=bind:{root.resolve()}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


# --- 1. spawn overhead ---------------------------------------------------------------------------


def bare_docker_run() -> float:
    started = time.monotonic()
    subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "true", IMAGE], check=True, capture_output=True
    )
    return time.monotonic() - started


def spawn_to_heartbeat(env: dict[str, str], layout: Layout, task_id: str) -> tuple[float, float]:
    """(seconds until spawn_task returned, seconds until the first heartbeat)."""
    write_task(layout, Task(id=task_id, prompt="true", agent="command"))
    os.environ.update(env)
    settings = resolve_settings(layout.root)
    backend = make_backend(settings.engine_config())
    context = prepare_spawning(settings, backend)
    status = layout.status_file(task_id)
    started = time.monotonic()
    spawn_task(context, task_id)
    returned = time.monotonic() - started
    while not status.exists():
        time.sleep(0.002)
    beat = time.monotonic() - started
    backend.close()
    return returned, beat


def bench_spawn(env: dict[str, str], layout: Layout, reps: int) -> list[str]:
    bare_docker_run()  # warm the image's layers into the page cache
    bare, returned, beats = [], [], []
    for rep in range(reps):
        bare.append(bare_docker_run())
        r, b = spawn_to_heartbeat(env, layout, f"spawn-{rep}")
        returned.append(r)
        beats.append(b)
    return [
        "| what | median | min | max |",
        "|---|---:|---:|---:|",
        f"| bare `docker run --rm --entrypoint true {IMAGE}` | {median_ms(bare)} | {min(bare) * 1000:.0f} ms | {max(bare) * 1000:.0f} ms |",
        f"| `spawn` call returns (preflight, create, start) | {median_ms(returned)} | {min(returned) * 1000:.0f} ms | {max(returned) * 1000:.0f} ms |",
        f"| `spawn` to the worker's first heartbeat | {median_ms(beats)} | {min(beats) * 1000:.0f} ms | {max(beats) * 1000:.0f} ms |",
        f"| overhead over the bare run (medians) | {(statistics.median(beats) - statistics.median(bare)) * 1000:.0f} ms | | |",
    ]


# --- 2. fan-out makespan -------------------------------------------------------------------------


def bench_fanout(
    env: dict[str, str], directory: Path, counts: list[int], task_s: float
) -> list[str]:
    """``orchestrator run -n N`` of N tasks: from launching the command to the last result (the
    makespan), beside the command's own exit (it also waits for the containers to end) and the
    span the workers themselves took (first claim to last result)."""
    lines = [
        "| tasks (= --max-workers) | makespan: `run` launched to last result | `run` exits"
        " | first claim to last result | ideal | makespan / makespan(1) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    base = None
    for count in counts:
        root = directory / f"fanout-{count}"
        layout = Layout(root).ensure()
        run_env = {**env, "ORCHESTRATION_DIR": str(root)}
        prompts = [f"sleep {task_s:g}" for _ in range(count)]
        command = [str(VENV_BIN / "orchestrator"), "run", "--agent", "command", "-n", str(count)]
        launched, started = utc_now(), time.monotonic()
        done = subprocess.run(
            [*command, "--json", *prompts], env=run_env, capture_output=True, text=True
        )
        exited = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"fan-out {count} failed: {done.stdout} {done.stderr}")
        results = [
            Result.model_validate_json(path.read_bytes())
            for path in layout.results_dir.glob("*.json")
        ]
        last = max(r.completed_at for r in results)
        span = last - min(r.started_at for r in results if r.started_at)
        makespan = (last - launched).total_seconds()
        base = base or makespan
        lines.append(
            f"| {count} | {makespan:.1f} s | {exited:.1f} s | {span.total_seconds():.1f} s "
            f"| {task_s:.1f} s | {makespan / base:.2f}x |"
        )
        remove_workers(docker.from_env(), root)
    return lines


# --- 3. the manager's own cost -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(
    command: list[str], env: dict[str, str], settle_s: float, window_s: float
) -> tuple[float, float, float]:
    """(CPU % over the window, RSS MB at its end, CPU seconds spent starting up)."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(settle_s)
        start_cpu, start = cpu_seconds(process.pid), time.monotonic()
        time.sleep(window_s)
        cpu = cpu_seconds(process.pid) - start_cpu
        return 100 * cpu / (time.monotonic() - start), rss_mb(process.pid), start_cpu
    finally:
        process.terminate()
        process.wait(timeout=30)


def fill_finished(layout: Layout, count: int) -> None:
    for n in range(count):
        task_id = f"done-{n:04d}"
        write_task(layout, Task(id=task_id, prompt="finished long ago", agent="command"))
        handle = claim_task(layout, task_id, worker_id="bench")
        assert handle is not None
        handle.publish_result(
            Result(
                task_id=task_id,
                status=ResultStatus.SUCCESS,
                completed_at=utc_now(),
                output="ok",
                cost_usd=0.01,
                branch=f"orchestrator/{task_id}",
            )
        )


def bench_manager(
    env: dict[str, str], directory: Path, settle_s: float, window_s: float
) -> list[str]:
    empty = Layout(directory / "idle").ensure()
    full = Layout(directory / "thousand").ensure()
    fill_finished(full, 1000)
    orchestrator = str(VENV_BIN / "orchestrator")
    cases: list[tuple[str, Layout, list[str]]] = [
        ("`dispatch -n 4`, empty root (idle)", empty, ["dispatch", "-n", "4"]),
        ("`dispatch -n 4`, 1,000 finished tasks", full, ["dispatch", "-n", "4"]),
        ("`watch` (live table), 1,000 finished tasks", full, ["watch"]),
        ("`watch --json`, 1,000 finished tasks", full, ["watch", "--json"]),
    ]
    lines = ["| manager process | CPU (window) | RSS | CPU to start up |", "|---|---:|---:|---:|"]
    for label, layout, args in cases:
        cpu, rss, startup = measure(
            [orchestrator, "--root", str(layout.root), *args],
            {**env, "ORCHESTRATION_DIR": str(layout.root)},
            settle_s,
            window_s,
        )
        lines.append(f"| {label} | {cpu:.2f} % | {rss:.0f} MB | {startup:.2f} s |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, shorter windows")
    parser.add_argument(
        "--reps", type=int, default=None, help="spawn repetitions (default 10, quick 3)"
    )
    parser.add_argument(
        "--window", type=float, default=None, help="CPU window in s (default 30, quick 10)"
    )
    parser.add_argument("--task-seconds", type=float, default=5.0, help="length of a fan-out task")
    parser.add_argument(
        "--only", choices=list(TITLES), action="append", help="run only this part (repeatable)"
    )
    args = parser.parse_args()
    reps = args.reps or (3 if args.quick else 10)
    window = args.window or (10.0 if args.quick else 30.0)
    client = docker.from_env()
    client.images.get(IMAGE)
    directory = Path(tempfile.mkdtemp(prefix="bench-spawn-"))
    root = directory / "root"
    layout = Layout(root).ensure()
    env = environment(root, make_remote(directory), directory)
    info = client.info()
    parts: dict[str, Callable[[], list[str]]] = {
        "spawn": lambda: bench_spawn(env, layout, reps),
        "fanout": lambda: bench_fanout(env, directory, [1, 4, 8, 16], args.task_seconds),
        "manager": lambda: bench_manager(env, directory, 5.0, window),
    }
    print(
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Docker {info.get('ServerVersion')} "
        f"({info.get('Driver')}), Python {platform.python_version()}\n"
    )
    try:
        for name, run in parts.items():
            if not args.only or name in args.only:
                print(f"### {TITLES[name]}\n")
                print("\n".join(run()) + "\n", flush=True)
    finally:
        for used in (root, directory / "idle", directory / "thousand"):  # workers and gateways
            remove_workers(client, used)
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
