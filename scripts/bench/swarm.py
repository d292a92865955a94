"""Benchmark of ``--backend swarm`` against ``--backend docker`` in the same run.

Run by hand (needs Docker and the claude-worker image; makes a single-node swarm unless the
engine is in one, and leaves it at the end)::

    .venv/bin/python scripts/bench/swarm.py [--reps N] [--task-seconds S]

It prints markdown tables (ready for the README):

1. Spawn to the worker's first heartbeat in ``status/<id>.json`` (``spawn_task``: preflight,
   then a container, or a network and a ``replicated-job`` service), the two backends
   interleaved.
2. Fan-out: ``orchestrator run -n 4`` of four ``sleep S`` tasks (``agent: command``), launched
   to the last result, for each backend.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spawn import (
    IMAGE,
    VENV_BIN,
    environment,
    make_remote,
    remove_workers,
    spawn_to_heartbeat,
)

from orchestration_protocol import Layout, Result, utc_now

BACKENDS = ("docker", "swarm")


def restore_dns_names(client: docker.DockerClient) -> None:
    """After ``swarm leave`` a container on a user-defined network has lost its DNS name until
    it is reconnected: reconnect those others may reach by name (not workers or gateways)."""
    for container in client.containers.list(filters={"status": "running"}):
        if (container.labels or {}).get("orchestrator.role") in ("worker", "gateway"):
            continue
        for name, attached in container.attrs["NetworkSettings"]["Networks"].items():
            if name not in ("bridge", "host", "none"):
                try:
                    network = client.networks.get(name)
                    network.disconnect(container)
                    network.connect(container, aliases=attached.get("Aliases") or None)
                except docker.errors.APIError:
                    continue


def remove_services(client: docker.DockerClient, root: Path) -> None:
    label = f"orchestrator.root=bind:{root.resolve()}"
    for service in client.services.list(filters={"label": label}):
        service.remove()
    deadline = time.monotonic() + 30
    while client.containers.list(all=True, filters={"label": label}) and time.monotonic() < deadline:
        remove_workers(client, root)
        time.sleep(0.5)
    for network in client.networks.list(filters={"label": label}):
        network.remove()


def bench_spawn(envs: dict[str, dict[str, str]], layouts: dict[str, Layout], reps: int) -> list[str]:
    beats: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    for rep in range(reps + 1):  # the first round warms the image, the gateway and the swarm
        for backend in BACKENDS:
            _, beat = spawn_to_heartbeat(envs[backend], layouts[backend], f"spawn-{rep}")
            if rep:
                beats[backend].append(beat)
    docker_median = statistics.median(beats["docker"])
    lines = ["| backend | spawn to first heartbeat, median | min | max | ratio to docker |", "|---|---:|---:|---:|---:|"]
    for backend in BACKENDS:
        values = beats[backend]
        lines.append(
            f"| {backend} | {statistics.median(values) * 1000:.0f} ms | {min(values) * 1000:.0f} ms "
            f"| {max(values) * 1000:.0f} ms | {statistics.median(values) / docker_median:.2f}x |"
        )
    return lines


def bench_fanout(envs: dict[str, dict[str, str]], directory: Path, task_s: float) -> list[str]:
    lines = ["| backend | 4 tasks, `-n 4`: launched to last result | ideal | ratio to docker |", "|---|---:|---:|---:|"]
    makespans: dict[str, float] = {}
    for backend in BACKENDS:
        root = directory / f"fanout-{backend}"
        layout = Layout(root).ensure()
        env = {**envs[backend], "ORCHESTRATION_DIR": str(root)}
        launched = utc_now()
        done = subprocess.run(
            [str(VENV_BIN / "orchestrator"), "run", "--agent", "command", "-n", "4", "--json",
             *[f"sleep {task_s:g}"] * 4],
            env=env, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"fan-out on {backend} failed: {done.stdout} {done.stderr}")
        results = [Result.model_validate_json(p.read_bytes()) for p in layout.results_dir.glob("*.json")]
        makespans[backend] = (max(r.completed_at for r in results) - launched).total_seconds()
        remove_services(docker.from_env(), root)
    for backend in BACKENDS:
        lines.append(
            f"| {backend} | {makespans[backend]:.1f} s | {task_s:.1f} s "
            f"| {makespans[backend] / makespans['docker']:.2f}x |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="spawn repetitions per backend")
    parser.add_argument("--task-seconds", type=float, default=5.0, help="length of a fan-out task")
    args = parser.parse_args()
    client = docker.from_env()
    client.images.get(IMAGE)
    made_swarm = client.info()["Swarm"].get("LocalNodeState") == "inactive"
    if made_swarm:
        subprocess.run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], check=True, capture_output=True)
    directory = Path(tempfile.mkdtemp(prefix="bench-swarm-"))
    remote = make_remote(directory)
    envs, layouts = {}, {}
    for backend in BACKENDS:
        root = directory / backend
        layouts[backend] = Layout(root).ensure()
        envs[backend] = {**environment(root, remote, directory), "ORCHESTRATOR_BACKEND": backend}
    try:
        print("### Spawn to first heartbeat\n")
        print("\n".join(bench_spawn(envs, layouts, args.reps)) + "\n", flush=True)
        print("### Fan-out\n")
        print("\n".join(bench_fanout(envs, directory, args.task_seconds)) + "\n", flush=True)
    finally:
        for backend in BACKENDS:
            remove_services(client, directory / backend)
        if made_swarm:
            subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)
            restore_dns_names(client)
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
