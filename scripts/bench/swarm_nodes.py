"""Benchmark of ``--backend swarm`` across the two-node test swarm (``scripts/engines/swarm-nodes.sh
up claude-worker``, as root): spawn to first heartbeat on the second node beside the first, and a
fan-out of 16 ``sleep`` tasks over both nodes.

    .venv/bin/python scripts/bench/swarm_nodes.py [--reps N] [--fanout N] [--sleep S]

Run through the ``orchestrator`` CLI against node2's engine, in a root of the shared host
directory; the gateways are started (and warm) before anything is measured. Prints markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from orchestration_protocol import Layout

IMAGE = os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker"
VENV_BIN = Path(sys.executable).parent
SHARED = Path(os.environ.get("SWARM_NODES_STATE", "/var/lib/orch-nodes")) / "shared"
MANAGER = "unix:///run/orch-node2.sock"


def orchestrator(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(VENV_BIN / "orchestrator"), *args], env=env, capture_output=True,
                          text=True, check=False, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"orchestrator {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def environment(root: Path, work: Path) -> dict[str, str]:
    remote = work / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True)
    seed = work / "seed"
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(seed)], check=True)
    (seed / "README.md").write_text("bench\n")
    for step in (["add", "."], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "x"],
                 ["push", "-q", str(remote), "main"]):
        subprocess.run(["git", *step], cwd=seed, check=True)
    limits = f"  image: {IMAGE}\n  memory: 512m\n  cpus: 0.5\n"
    profiles = work / "profiles.yaml"
    profiles.write_text(f"default:\n{limits}first:\n{limits}  placement: ['node.role==manager']\n"
                        f"second:\n{limits}  placement: ['node.role==worker']\n")
    return {**os.environ, "DOCKER_HOST": MANAGER, "ORCHESTRATION_DIR": str(root),
            "ORCHESTRATOR_BACKEND": "swarm", "ORCHESTRATOR_WORKER_IMAGE": IMAGE,
            "ORCHESTRATOR_PROFILES": str(profiles), "ORCHESTRATOR_HEARTBEAT_S": "1",
            "REPO_URL": str(remote)}


def first_heartbeat(env: dict[str, str], layout: Layout, profile: str, task_id: str) -> float:
    """Seconds from ``orchestrator spawn`` to the worker's first heartbeat."""
    orchestrator(env, "task", "create", "--id", task_id, "--agent", "command", "sleep 1")
    started = time.monotonic()
    orchestrator(env, "spawn", profile, task_id)
    status = layout.status_file(task_id)
    while not status.exists():
        time.sleep(0.05)
    return time.monotonic() - started


def row(name: str, values: list[float]) -> str:
    return (f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} "
            f"| {len(values)} |")


def nodes_of(env: dict[str, str], root: Path) -> Counter[str]:
    """How many of the root's jobs ran on each node."""
    docker = ["docker", "-H", MANAGER]
    services = subprocess.run([*docker, "service", "ls", "-q", "--filter",
                               f"label=orchestrator.root=bind:{root}", "--filter",
                               "label=orchestrator.role=worker"],
                              capture_output=True, text=True, check=True).stdout.split()
    count: Counter[str] = Counter()
    for service in services:
        tasks = subprocess.run([*docker, "service", "ps", "-q", service], capture_output=True,
                               text=True, check=True).stdout.split()
        node = subprocess.run([*docker, "inspect", tasks[0], "--format", "{{.NodeID}}"],
                              capture_output=True, text=True, check=True).stdout.strip()
        count[node[:12]] += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--fanout", type=int, default=16)
    parser.add_argument("--sleep", type=float, default=5)
    args = parser.parse_args()
    root = SHARED / f"bench-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as work:
        env = environment(root, Path(work))
        layout = Layout(root)
        try:
            orchestrator(env, "run", "--agent", "command", "true")  # gateways up and warm
            times: dict[str, list[float]] = {"first": [], "second": []}
            for rep in range(args.reps):
                for profile in ("first", "second"):
                    times[profile].append(first_heartbeat(env, layout, profile, f"{profile}-{rep}"))
            orchestrator(env, "wait", "--timeout", "300")
            orchestrator(env, "cleanup")
            print("| spawn to first heartbeat | median s | min s | max s | n |\n|---|---|---|---|---|")
            print(row("node2 (the manager's node)", times["first"]))
            print(row("node3 (the second node)", times["second"]))
            prompts = [f"sleep {args.sleep:g}"] * args.fanout
            started = time.monotonic()
            out = orchestrator(env, "run", "--agent", "command", "-n", str(args.fanout), "--json",
                               *prompts)
            makespan = time.monotonic() - started
            done = json.loads(out)
            print(f"\nfan-out of {args.fanout} x `sleep {args.sleep:g}` over two nodes: "
                  f"{makespan:.1f} s (ideal {args.sleep:g} s); per node "
                  f"{dict(nodes_of(env, root))}; {len(done.get('tasks', []))} tasks")
        finally:
            subprocess.run([str(VENV_BIN / "orchestrator"), "cleanup", "--all", "--gateway",
                            "--simulation"], env=env, capture_output=True, check=False)


if __name__ == "__main__":
    main()
