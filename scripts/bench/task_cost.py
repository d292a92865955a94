"""Benchmark of one task's cost on the worker side: where its time and CPU go, step by step,
beside the bare cost of each step measured in the same image in the same run.

Run by hand (needs Docker and the worker image: scripts/build-images.sh --offline)::

    .venv/bin/python scripts/bench/task_cost.py [--reps N] [--files N]

The worker writes one ``-- cost:`` line per attempt in its log (``worker/costs.py``): wall and
CPU milliseconds of each step (startup: the interpreter and the imports; claim; clone: the
runtime's private repository and the agent's read-only ``base.git``; ownership; checkout: the
agent's own clone of ``base.git``; gateway; agent; check; commit; patch; push; bundle, only when
the push failed; result). The bench runs ``--reps`` cold spawns of a task that changes one file
(``agent: command``) in a repository of ``--files`` files, reads those lines and prints the
medians beside the bare commands in one ``docker run`` of the same image: ``python -c pass``,
``import worker.cli``, ``git clone --shared --bare``, a plain ``git clone``, ``git add`` and
``commit``, ``git diff``, ``git push`` and ``git bundle create`` on a local bare repository, and
the bare ``docker run --rm --entrypoint true``. It prints the machine's load average beside the
figures, which are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from manager.backends import make_backend
from manager.config import resolve_settings
from manager.run.spawn import prepare_spawning, spawn_task
from orchestration_protocol import Layout, Task, write_task
from scripts.bench.spawn import IMAGE, bare_docker_run, environment, remove_workers
from worker.costs import COST_PREFIX, parse_cost_line

BARE_SCRIPT = r"""
import json, os, resource, subprocess, sys, tempfile, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
def step(command, cwd, reps):
    walls, cpus = [], []
    for _ in range(reps):
        w, c = time.monotonic(), cpu()
        subprocess.run(command, cwd=cwd, shell=True, check=True, capture_output=True)
        walls.append((time.monotonic() - w) * 1000)
        cpus.append((cpu() - c) * 1000)
    walls.sort(); cpus.sort()
    return walls[len(walls) // 2], cpus[len(cpus) // 2]
files, reps = int(sys.argv[1]), int(sys.argv[2])
d = tempfile.mkdtemp()
os.chdir(d)
g = "git -c user.name=b -c user.email=b@b.invalid"
subprocess.run(f"git init -q -b main seed && cd seed && for i in $(seq {files}); do echo $i > f$i.txt; done && {g} add -A && {g} commit -qm s && git clone -q --bare . ../mirror.git", shell=True, check=True)
out = {}
out["python -c pass"] = step("python -c pass", d, reps)
out["python -c 'import worker.cli'"] = step("python -c 'import worker.cli'", d, reps)
out["git clone --shared --bare"] = step("rm -rf p.git && git clone -q --shared --bare mirror.git p.git", d, reps)
out["git clone (plain, local)"] = step("rm -rf w && git clone -q --no-hardlinks mirror.git w", d, reps)
out["git add -A && git commit"] = step(f"echo x >> f1.txt && {g} add -A && {g} commit -qm c", d + "/w", reps)
out["git diff --binary HEAD~1"] = step("git diff --binary HEAD~1 > /dev/null", d + "/w", reps)
out["git push (local bare)"] = step(f"echo y >> f1.txt && {g} commit -qam c && git push -q --force ../mirror.git HEAD:refs/heads/t", d + "/w", reps)
out["git bundle create HEAD~1..HEAD"] = step("git bundle create -q ../b.bundle HEAD~1..HEAD", d + "/w", reps)
print(json.dumps(out))
"""
"""Runs inside the image (root, /tmp writable): each bare command ``reps`` times, medians."""
STEP_TO_BARE = {
    "startup": "python -c 'import worker.cli'",
    "clone": "git clone --shared --bare",
    "checkout": "git clone (plain, local)",
    "commit": "git add -A && git commit",
    "patch": "git diff --binary HEAD~1",
    "push": "git push (local bare)",
    "bundle": "git bundle create HEAD~1..HEAD",
}
"""Which bare command stands beside which step of the worker."""


def make_remote(directory: Path, files: int) -> Path:
    """A bare repository of ``files`` small files in one commit."""
    seed, remote = directory / "seed", directory / "remote.git"
    git = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(seed)], check=True)
    for n in range(files):
        (seed / f"f{n}.txt").write_text(f"{n}\n")
    subprocess.run([*git, "-C", str(seed), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(seed), "commit", "-q", "-m", "init"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(remote)], check=True)
    return remote


def worker_costs(
    env: dict[str, str], layout: Layout, reps: int
) -> list[dict[str, tuple[float, float]]]:
    """Spawn ``reps`` tasks one after another; the cost line of each one's log."""
    os.environ.update(env)
    settings = resolve_settings(layout.root)
    backend = make_backend(settings)
    context = prepare_spawning(settings, backend)
    costs = []
    try:
        for rep in range(reps):
            task_id = f"cost-{rep}"
            write_task(layout, Task(id=task_id, prompt="echo changed >> f1.txt", agent="command"))
            spawn_task(context, task_id)
            costs.append(wait_for_cost(layout, task_id))
    finally:
        backend.close()
    return costs


def wait_for_cost(
    layout: Layout, task_id: str, timeout: float = 180
) -> dict[str, tuple[float, float]]:
    deadline = time.monotonic() + timeout
    log = layout.log_file(task_id)
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                if line.startswith(COST_PREFIX):
                    return parse_cost_line(line)
        time.sleep(0.05)
    raise SystemExit(
        f"no cost line in {log} after {timeout:g}s (an image without worker/costs.py?)"
    )


def bare_costs(files: int, reps: int) -> dict[str, tuple[float, float]]:
    done = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python",
            IMAGE,
            "-c",
            BARE_SCRIPT,
            str(files),
            str(reps),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    walls = sorted(bare_docker_run() * 1000 for _ in range(reps))
    figures["docker run --rm --entrypoint true"] = (walls[len(walls) // 2], 0.0)
    return {name: (float(w), float(c)) for name, (w, c) in figures.items()}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def table(
    costs: list[dict[str, tuple[float, float]]], bare: dict[str, tuple[float, float]]
) -> list[str]:
    steps = list(dict.fromkeys(name for cost in costs for name in cost))
    lines = [
        "| step | worker wall p50 | worker CPU p50 | bare command in the same image | wall p50 | CPU p50 |",
        "|---|---:|---:|---|---:|---:|",
    ]
    total_wall = total_cpu = 0.0
    for step in steps:
        wall = median([cost[step][0] for cost in costs if step in cost])
        cpu = median([cost[step][1] for cost in costs if step in cost])
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        name = STEP_TO_BARE.get(step)
        bw, bc = bare.get(name, (0.0, 0.0)) if name else (0.0, 0.0)
        beside = f"`{name}` | {bw:.0f} ms | {bc:.0f} ms" if name else "| |"
        lines.append(f"| {step} | {wall:.0f} ms | {cpu:.0f} ms | {beside} |")
    lines.append(f"| **sum of the medians** | {total_wall:.0f} ms | {total_cpu:.0f} ms | | | |")
    for name in ("python -c pass", "docker run --rm --entrypoint true"):
        w, c = bare[name]
        lines.append(f"| | | | `{name}` | {w:.0f} ms | {c:.0f} ms |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=5, help="tasks spawned, bare reps (default 5)")
    parser.add_argument(
        "--files", type=int, default=200, help="files in the repository (default 200)"
    )
    args = parser.parse_args()
    client = docker.from_env()
    client.images.get(IMAGE)
    directory = Path(tempfile.mkdtemp(prefix="bench-cost-"))
    root = directory / "root"
    layout = Layout(root).ensure()
    env = environment(root, make_remote(directory, args.files), directory)
    load = os.getloadavg()
    print(
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, image {IMAGE}, "
        f"{args.files} files, {args.reps} reps; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
    )
    try:
        bare = bare_costs(args.files, args.reps)
        costs = worker_costs(env, layout, args.reps)
    finally:
        remove_workers(client, root)
        shutil.rmtree(directory, ignore_errors=True)
    print("### Per-task cost on the worker side\n")
    print("\n".join(table(costs, bare)) + "\n")
    load = os.getloadavg()
    print(f"Load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
