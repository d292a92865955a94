"""Benchmark of what a fan-out costs in CPU seconds per task, whoever spends them: the worker
containers, their containerd shims, the manager's ``run`` and ``pool`` processes, the gateway
container, and (shared with anything else on the machine) dockerd and containerd.

Run by hand (needs Docker, root to read the containers' cgroups, and the worker image:
scripts/build-images.sh --offline)::

    .venv/bin/python scripts/bench/fleet_cpu.py [--counts 1,16,50] [--task-seconds 20] [--idle-s 10]

CPU seconds do not depend on how loaded the machine is, as wall-clock figures do: on a machine of
2 CPUs the makespan of 50 tasks is bounded below by the fleet's CPU per task x 50 / 2. For each
count N it runs ``orchestrator run --agent command -n N`` of N ``sleep S`` tasks twice: cold
(N spawns) and with a pool of N idle workers started before (``orchestrator pool -n N``), and
prints the CPU seconds per task of each part beside the bare costs measured in the same run: a
bare ``docker run --rm --entrypoint true`` (its container, shim and docker CLI) and
``python -c pass`` / ``import worker.cli`` in the image. It also prints what an idle pool worker
costs per minute of waiting, and the workers' own ``-- cost:`` lines (``worker/costs.py``) step by
step, medians per task.

A sampler reads every container's ``cpuacct.usage`` (cgroup v1: ``/sys/fs/cgroup/cpuacct/docker``,
cgroup v2: ``/sys/fs/cgroup/system.slice/docker-<id>.scope`` or ``/sys/fs/cgroup/docker``) and each
shim's own ``/proc/<pid>/stat`` (not its children: they are the container's processes and the
short ``runc`` calls, which this does not see) every ``--sample-ms``, and keeps the last value
before the container went away, so the few milliseconds after the last sample are missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from orchestration_protocol import Layout
from scripts.bench.pool import ORCHESTRATOR, idle_count, wait_for
from scripts.bench.spawn import IMAGE, environment, make_remote, remove_workers
from worker.costs import COST_PREFIX, parse_cost_line

TICKS = os.sysconf("SC_CLK_TCK")
CGROUP_DIRS = (
    Path("/sys/fs/cgroup/cpuacct/docker"),
    Path("/sys/fs/cgroup/cpu,cpuacct/docker"),
    Path("/sys/fs/cgroup/system.slice"),
    Path("/sys/fs/cgroup/docker"),
)
CONTAINER_ID = re.compile(r"^(?:docker-)?([0-9a-f]{64})(?:\.scope)?$")
SHIM_ID = re.compile(rb"-id\x00([0-9a-f]{64})\x00")
BARE_PYTHON = {
    "python -c pass": ["python", "-c", "pass"],
    "python -c 'import worker.cli'": ["python", "-c", "import worker.cli"],
}


def process_cpu_s(pid: int, children: bool = True) -> float | None:
    """utime + stime (and the waited-for children's) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / TICKS


def pids_named(name: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(entry.path, "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


def cgroup_usage_s(directory: Path) -> float | None:
    """A container's CPU seconds from its cgroup (v1 cpuacct.usage, v2 cpu.stat usage_usec)."""
    try:
        return int((directory / "cpuacct.usage").read_text()) / 1e9
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        for line in (directory / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
    except OSError:
        return None
    return None


@dataclass
class Sampler:
    """The last CPU seconds seen of every container (by id) and of every container's shim."""

    interval_s: float = 0.02
    containers: dict[str, float] = field(default_factory=dict)
    shims: dict[str, float] = field(default_factory=dict)
    fuse: dict[str, float] = field(default_factory=dict)
    """fuse-overlayfs processes (the storage driver's, one per running container) by mount."""
    _shim_pids: dict[int, str] = field(default_factory=dict)
    _fuse_pids: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.cgroups = next((d for d in CGROUP_DIRS if (d / "cgroup.procs").exists()), None)
        if self.cgroups is None:
            raise SystemExit("no cgroup of Docker's containers found (cgroupfs or systemd driver)")

    def _containers(self) -> None:
        assert self.cgroups is not None
        for entry in os.scandir(self.cgroups):
            match = CONTAINER_ID.match(entry.name)
            if match:
                used = cgroup_usage_s(Path(entry.path))
                if used is not None:
                    self.containers[match.group(1)] = used

    def _find_shims(self) -> None:
        for pid in pids_named("containerd-shim"):
            if pid not in self._shim_pids:
                with contextlib.suppress(OSError):
                    match = SHIM_ID.search(Path(f"/proc/{pid}/cmdline").read_bytes() + b"\x00")
                    if match:
                        self._shim_pids[pid] = match.group(1).decode()

    def _find_fuse(self) -> None:
        for pid in pids_named("fuse-overlayfs"):
            if pid not in self._fuse_pids:
                with contextlib.suppress(OSError, IndexError):
                    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\x00")
                    self._fuse_pids[pid] = arguments.split(b"\x00")[-1].decode()

    def _shims(self) -> None:
        for pids, into in ((self._shim_pids, self.shims), (self._fuse_pids, self.fuse)):
            for pid, key in list(pids.items()):
                used = process_cpu_s(pid, children=False)
                if used is None:
                    del pids[pid]
                else:
                    into[key] = used

    def sample(self, find_shims: bool = True) -> None:
        self._containers()
        if find_shims:
            self._find_shims()
            self._find_fuse()
        self._shims()

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval_s):
            self.sample(find_shims=n % 5 == 0)
            n += 1

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def snapshot(self) -> tuple[dict[str, float], dict[str, float]]:
        """Containers' and their shims' CPU seconds by container id, the shims' entries under
        the id and the fuse-overlayfs ones under the mount path."""
        self.sample()
        return dict(self.containers), {**self.shims, **self.fuse}


def engine_cpu_s() -> float:
    """dockerd + containerd CPU seconds so far (shared with everything else on the machine)."""
    pids = pids_named("dockerd") + pids_named("containerd")
    return sum(process_cpu_s(pid, children=False) or 0.0 for pid in pids)


def ours(client: docker.DockerClient, root: Path) -> dict[str, dict[str, str]]:
    """Our containers of ``root`` (running or ended): id -> labels, plus ``state``."""
    label = f"orchestrator.root=bind:{root.resolve()}"
    found = {}
    for summary in client.api.containers(all=True, filters={"label": label}):
        found[summary["Id"]] = {**(summary.get("Labels") or {}), "state": summary["State"]}
    return found


def merged_dir(client: docker.DockerClient, container_id: str) -> str:
    """Where the storage driver mounts the container's root (its fuse-overlayfs key)."""
    data = client.api.inspect_container(container_id).get("GraphDriver", {}).get("Data") or {}
    return str(data.get("MergedDir", ""))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


# --- the bare costs ------------------------------------------------------------------------------


def bare_docker_run(sampler: Sampler, reps: int) -> dict[str, float]:
    """CPU seconds of a bare ``docker run --rm --entrypoint true``: its container, shim, CLI."""
    rows: dict[str, list[float]] = {
        "container": [], "shim": [], "fuse": [], "docker CLI": [], "engine": []
    }
    for _ in range(reps):
        before_c, before_s = sampler.snapshot()
        engine = engine_cpu_s()
        started = resource_children_s()
        subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "true", IMAGE], check=True, capture_output=True
        )
        rows["docker CLI"].append(resource_children_s() - started)
        time.sleep(0.3)
        after_c, after_s = sampler.snapshot()
        rows["engine"].append(engine_cpu_s() - engine)
        rows["container"].append(sum(v for k, v in after_c.items() if k not in before_c))
        fresh = [k for k in after_s if k not in before_s]
        rows["shim"].append(sum(after_s[k] for k in fresh if not k.startswith("/")))
        rows["fuse"].append(sum(after_s[k] for k in fresh if k.startswith("/")))
    return {name: median(values) for name, values in rows.items()}


def bare_python(reps: int) -> dict[str, float]:
    """CPU seconds of ``python -c pass`` and ``import worker.cli`` in one container of the image."""
    script = (
        "import resource, subprocess, sys, json\n"
        "def cpu():\n"
        "    r = resource.getrusage(resource.RUSAGE_CHILDREN); return r.ru_utime + r.ru_stime\n"
        "out = {}\n"
        f"for name, command in {BARE_PYTHON!r}.items():\n"
        "    runs = []\n"
        f"    for _ in range({reps}):\n"
        "        c = cpu(); subprocess.run(command, check=True); runs.append(cpu() - c)\n"
        "    runs.sort(); out[name] = runs[len(runs) // 2]\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        ["docker", "run", "--rm", "--read-only", "--entrypoint", "python", IMAGE, "-c", script],
        capture_output=True, text=True, check=True,
    )
    return {k: float(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def resource_children_s() -> float:
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


# --- one fan-out ---------------------------------------------------------------------------------


@dataclass
class FanoutCpu:
    """CPU seconds of one fan-out, by part."""

    count: int
    warm: bool
    workers: float = 0.0
    """Worker containers that ran a task, while ``run`` ran (a pool's: not its start and wait)."""
    shims: float = 0.0
    fuse: float = 0.0
    """The fuse-overlayfs processes of the workers' roots (where that is the storage driver)."""
    run: float = 0.0
    """The ``orchestrator run`` process and its children."""
    pool: float = 0.0
    """The ``orchestrator pool`` process, while ``run`` ran."""
    replacements: float = 0.0
    """Fresh pool workers started, while ``run`` ran, in place of the ones that ran a task."""
    gateway: float = 0.0
    engine: float = 0.0
    """dockerd + containerd while ``run`` ran (shared with the rest of the machine)."""
    makespan_s: float = 0.0
    costs: list[dict[str, tuple[float, float]]] = field(default_factory=list)

    @property
    def total(self) -> float:
        return (
            self.workers + self.replacements + self.shims + self.fuse + self.run + self.pool
            + self.gateway
        )


def start_pool(env: dict[str, str], layout: Layout, size: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [ORCHESTRATOR, "pool", "-n", str(size), "--name", "bench"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: idle_count(layout) >= size, 120 + 4 * size, f"{size} idle pool workers")
    time.sleep(2)  # the last ones' start-up settles
    return process


def stop_pool(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=180)


def idle_cost(
    sampler: Sampler, client: docker.DockerClient, root: Path, pool: subprocess.Popen[bytes],
    size: int, window_s: float,
) -> tuple[float, float]:
    """(CPU ms per idle worker per minute, CPU ms of the pool process per minute) over a window."""
    mine = [cid for cid, labels in ours(client, root).items() if "orchestrator.pool" in labels]
    before, _ = sampler.snapshot()
    pool_before = process_cpu_s(pool.pid) or 0.0
    time.sleep(window_s)
    after, _ = sampler.snapshot()
    pool_after = process_cpu_s(pool.pid) or 0.0
    spent = sum(after.get(cid, 0.0) - before.get(cid, 0.0) for cid in mine)
    per_minute = 60.0 / window_s
    return spent / max(1, size) * per_minute * 1000, (pool_after - pool_before) * per_minute * 1000


def read_costs(layout: Layout) -> list[dict[str, tuple[float, float]]]:
    costs = []
    for log in layout.logs_dir.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(COST_PREFIX):
                costs.append(parse_cost_line(line))
    return costs


def fanout(
    sampler: Sampler, client: docker.DockerClient, env: dict[str, str], root: Path,
    count: int, task_s: float, warm: bool, idle_s: float,
) -> tuple[FanoutCpu, tuple[float, float] | None]:
    layout = Layout(root).ensure()
    run_env = {**env, "ORCHESTRATION_DIR": str(root)}
    figures = FanoutCpu(count, warm)
    pool = start_pool(run_env, layout, count) if warm else None
    idle = None
    try:
        if pool is not None and idle_s > 0:
            idle = idle_cost(sampler, client, root, pool, count, idle_s)
        before, before_shims = sampler.snapshot()
        engine, pool_cpu = engine_cpu_s(), process_cpu_s(pool.pid) if pool else 0.0
        prompts = [f"sleep {task_s:g}" for _ in range(count)]
        started = time.monotonic()
        children = resource_children_s()
        done = subprocess.run(
            [ORCHESTRATOR, "run", "--agent", "command", "-n", str(count), "--json", *prompts],
            env=run_env, capture_output=True, text=True,
        )
        figures.run = resource_children_s() - children
        figures.makespan_s = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"fan-out {count} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        time.sleep(1.0)
        figures.engine = engine_cpu_s() - engine
        if pool is not None:
            figures.pool = (process_cpu_s(pool.pid) or 0.0) - (pool_cpu or 0.0)
        after, shims = sampler.snapshot()
        for cid, labels in ours(client, root).items():
            used = after.get(cid, 0.0) - before.get(cid, 0.0)
            if labels.get("orchestrator.role") == "gateway":
                figures.gateway += used
                continue
            figures.shims += shims.get(cid, 0.0) - before_shims.get(cid, 0.0)
            mount = merged_dir(client, cid)
            figures.fuse += shims.get(mount, 0.0) - before_shims.get(mount, 0.0)
            if warm and labels["state"] == "running":
                figures.replacements += used
            else:
                figures.workers += used
        figures.costs = read_costs(layout)
    finally:
        if pool is not None:
            stop_pool(pool)
        remove_workers(client, root)
    return figures, idle


# --- the report ----------------------------------------------------------------------------------


def per_task_table(runs: list[FanoutCpu], bare: dict[str, float]) -> list[str]:
    lines = [
        "| tasks | pool | worker containers | pool's new workers | shims | fuse-overlayfs | `run` "
        "| `pool` | gateway "
        "| **total per task** "
        "| dockerd+containerd (shared) | makespan (load-skewed) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        n = r.count
        lines.append(
            f"| {n} | {'yes' if r.warm else 'no'} | {r.workers / n:.3f} s "
            f"| {r.replacements / n:.3f} s | {r.shims / n:.3f} s | {r.fuse / n:.3f} s "
            f"| {r.run / n:.3f} s | {r.pool / n:.3f} s | {r.gateway / n:.3f} s "
            f"| **{r.total / n:.3f} s** | {r.engine / n:.3f} s | {r.makespan_s:.1f} s |"
        )
    container = bare["container"] + bare["shim"] + bare["fuse"] + bare["docker CLI"]
    lines.append(
        f"| bare `docker run --rm --entrypoint true` | | {bare['container']:.3f} s | | {bare['shim']:.3f} s "
        f"| {bare['fuse']:.3f} s "
        f"| {bare['docker CLI']:.3f} s (CLI) | | | **{container:.3f} s** | {bare['engine']:.3f} s | |"
    )
    for name in BARE_PYTHON:
        lines.append(f"| bare `{name}` in the image | | {bare[name]:.3f} s | | | | | | | | | |")
    return lines


def steps_table(runs: list[FanoutCpu]) -> list[str]:
    columns = [f"{r.count}{' pool' if r.warm else ''}" for r in runs]
    steps = list(dict.fromkeys(step for r in runs for cost in r.costs for step in cost))
    lines = [
        "| step (worker runtime, CPU ms p50) | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for step in steps:
        cells = [
            f"{median([c[step][1] for c in r.costs if step in c]):.0f}" for r in runs
        ]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    sums = [f"{median([sum(v[1] for v in c.values()) for c in r.costs]):.0f}" for r in runs]
    lines.append("| **sum** | " + " | ".join(sums) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--counts", default="1,16,50", help="fan-out sizes (default 1,16,50)")
    parser.add_argument("--task-seconds", type=float, default=20.0, help="length of a task")
    parser.add_argument("--idle-s", type=float, default=10.0, help="idle pool window (0: skip)")
    parser.add_argument("--reps", type=int, default=5, help="bare reps (default 5)")
    parser.add_argument("--sample-ms", type=float, default=20.0, help="sampling period")
    parser.add_argument("--mode", choices=["cold", "pool", "both"], default="both")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("fleet_cpu.py reads the containers' cgroups and shims: run it as root.")
    counts = [int(c) for c in args.counts.split(",")]
    modes = {"cold": [False], "pool": [True], "both": [False, True]}[args.mode]
    client = docker.from_env()
    client.images.get(IMAGE)
    directory = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    env = environment(directory / "root", make_remote(directory), directory)
    load = os.getloadavg()
    print(
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, image {IMAGE}, "
        f"`sleep {args.task_seconds:g}` tasks; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
    )
    runs: list[FanoutCpu] = []
    idles: list[tuple[int, tuple[float, float]]] = []
    try:
        with Sampler(interval_s=args.sample_ms / 1000) as sampler:
            bare = bare_docker_run(sampler, args.reps) | bare_python(args.reps)
            for count in counts:
                for warm in modes:
                    root = directory / f"fanout-{count}-{'pool' if warm else 'cold'}"
                    figures, idle = fanout(
                        sampler, client, env, root, count, args.task_seconds, warm, args.idle_s
                    )
                    runs.append(figures)
                    if idle is not None:
                        idles.append((count, idle))
                    print(
                        f"  {count} {'pool' if warm else 'cold'}: {figures.total / count:.3f} CPU s "
                        f"per task, makespan {figures.makespan_s:.1f} s",
                        file=sys.stderr, flush=True,
                    )
    finally:
        for path in directory.glob("fanout-*"):
            remove_workers(client, path)
        shutil.rmtree(directory, ignore_errors=True)
    print("### CPU seconds per task\n")
    print("\n".join(per_task_table(runs, bare)) + "\n")
    if idles:
        print("### An idle pool worker\n")
        print("| pool size | CPU per idle worker per minute | `pool` process per minute |")
        print("|---:|---:|---:|")
        for size, (worker_ms, pool_ms) in idles:
            print(f"| {size} | {worker_ms:.0f} ms | {pool_ms:.0f} ms |")
        print()
    print("### The worker runtime's steps (its `-- cost:` lines)\n")
    print("\n".join(steps_table(runs)) + "\n")
    load = os.getloadavg()
    print(f"Load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
