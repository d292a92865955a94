"""Benchmark of the SLURM engine's spawn beside the Docker engine's: from calling the spawner
(``spawn_task``: preflight, then ``sbatch`` or container create and start) to the worker's first
heartbeat, by :func:`scripts.bench.spawn.spawn_to_heartbeat`, alternating the engines on one
root kind each, with the worker gone before the next spawn (a job waiting for the node's CPUs
would measure the queue, not the engine).

Run by hand as root on a machine with the SLURM test cluster up and the worker image built::

    scripts/engines/slurm.sh up
    .venv/bin/python -m scripts.bench.slurm [--reps N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from manager.backends import make_backend
from manager.config import resolve_settings
from manager.polling import poll_until
from orchestration_protocol import Layout
from scripts.bench.spawn import IMAGE, environment, make_remote, spawn_to_heartbeat

ENDED_WITHIN_S = 120.0


def all_ended(layout: Layout) -> bool:
    """Whether no worker of the root still runs (its job has left the queue)."""
    backend = make_backend(resolve_settings(layout.root).engine_config())
    try:
        return not any(worker.running for worker in backend.workers.all())
    finally:
        backend.close()


def row(what: str, values: list[float]) -> str:
    return (
        f"| {what} | {statistics.median(values):.2f} s | {min(values):.2f} s "
        f"| {max(values):.2f} s | {len(values)} |"
    )


def bench(directory: Path, reps: int) -> list[str]:
    times: dict[str, tuple[list[float], list[float]]] = {"docker": ([], []), "slurm": ([], [])}
    envs = {}
    for engine in times:
        root = directory / engine
        layout = Layout(root).ensure()
        envs[engine] = (layout, {**environment(root, make_remote(root.parent / f"{engine}-remote"), root.parent), "ORCHESTRATOR_BACKEND": engine})
    for rep in range(reps + 1):  # the first round warms the image and starts the gateways
        for engine, (layout, env) in envs.items():
            returned, beat = spawn_to_heartbeat(env, layout, f"{engine}-{rep}")
            poll_until(lambda layout=layout: all_ended(layout), timeout_s=ENDED_WITHIN_S, interval_s=0.5)
            if rep:
                times[engine][0].append(returned)
                times[engine][1].append(beat)
    return [
        "| what | median | min | max | n |",
        "|---|---:|---:|---:|---:|",
        row("`docker`: spawn call returns (preflight, create, start)", times["docker"][0]),
        row("`docker`: spawn to the worker's first heartbeat", times["docker"][1]),
        row("`slurm`: spawn call returns (preflight, sbatch)", times["slurm"][0]),
        row("`slurm`: spawn (sbatch) to the worker's first heartbeat", times["slurm"][1]),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="spawns per engine (default 5)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    print(f"Machine: {os.cpu_count()} CPUs; image {IMAGE}\n")
    try:
        print("\n".join(bench(directory, args.reps)) + "\n", flush=True)
    finally:
        for engine in ("docker", "slurm"):
            root = directory / engine
            env = {**os.environ, "ORCHESTRATION_DIR": str(root), "ORCHESTRATOR_BACKEND": engine}
            subprocess.run([".venv/bin/orchestrator", "cleanup", "--all", "--gateway", "--simulation"],
                           env=env, capture_output=True, check=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
