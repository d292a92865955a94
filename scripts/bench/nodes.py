"""Benchmark of the test engines of ``scripts/engines/``: bringing them up, and how long a job
takes to get its container running through them beside a bare ``docker run``.

Run by hand as root (needs Docker and the image; brings the engines up and takes them down)::

    .venv/bin/python scripts/bench/nodes.py [--reps N] [--image IMAGE]

It prints markdown tables:

1. ``swarm-nodes.sh up IMAGE`` (two netns dockerds, one swarm, the image loaded into both) and
   ``down``; ``slurm.sh up`` (packages already installed) and ``down``.
2. Submission to the container's first instruction, timed by the container itself (it writes
   ``time.time()`` into a bind-mounted directory): ``sbatch --wrap 'docker run ...'`` beside a
   bare ``docker run`` on the main engine, and a ``replicated-job`` placed on the worker node
   beside ``docker run`` on that node's engine; interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ENGINES = Path(__file__).resolve().parents[1] / "engines"
NODE3 = "unix:///run/orch-node3.sock"
NODE2 = "unix:///run/orch-node2.sock"
STAMP = "import time; open('/out/t', 'w').write(repr(time.time()))"


def timed(*command: str) -> float:
    """Seconds ``command`` took; raises when it fails."""
    start = time.monotonic()
    subprocess.run(command, check=True, capture_output=True)
    return time.monotonic() - start


def stamp_after(submit: Callable[[Path], None], out: Path) -> float:
    """Seconds from calling ``submit`` to the moment its container wrote ``out/t``."""
    target = out / "t"
    target.unlink(missing_ok=True)
    start = time.time()
    submit(out)
    for _ in range(1200):
        if target.exists() and target.read_text():
            return float(target.read_text()) - start
        time.sleep(0.05)
    raise RuntimeError(f"the container never wrote {target}")


def docker_run(image: str, host: str | None = None) -> Callable[[Path], None]:
    prefix = ["docker", *(["-H", host] if host else [])]

    def submit(out: Path) -> None:
        subprocess.run(
            [*prefix, "run", "--rm", "--network", "none", "-v", f"{out}:/out", image,
             "python3", "-c", STAMP],
            check=True, capture_output=True,
        )  # fmt: skip

    return submit


def sbatch_run(image: str) -> Callable[[Path], None]:
    def submit(out: Path) -> None:
        wrap = f'docker run --rm --network none -v {out}:/out {image} python3 -c "{STAMP}"'
        subprocess.run(["sbatch", "-o", "/dev/null", "--wrap", wrap], check=True,
                       capture_output=True)  # fmt: skip

    return submit


def swarm_job(image: str) -> Callable[[Path], None]:
    """Each call makes a ``replicated-job`` service; ``tear_down`` goes with the whole swarm."""

    def submit(out: Path) -> None:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["docker", "-H", NODE2, "service", "create", "-q", "--detach", "--no-resolve-image",
             "--name", name,
             "--mode", "replicated-job", "--constraint", "node.role==worker",
             "--mount", f"type=bind,source={out},target=/out", image, "python3", "-c", STAMP],
            check=True, capture_output=True,
        )  # fmt: skip

    return submit


def row(label: str, samples: list[float]) -> str:
    median = statistics.median(samples)
    return f"| {label} | {median:.2f} | {min(samples):.2f} | {max(samples):.2f} | {len(samples)} |"


def bring_up(image: str) -> list[str]:
    swarm = ENGINES / "swarm-nodes.sh"
    slurm = ENGINES / "slurm.sh"
    subprocess.run([swarm, "down"], check=True, capture_output=True)
    subprocess.run([slurm, "down"], check=True, capture_output=True)
    up_swarm = timed(str(swarm), "up", image)
    up_slurm = timed(str(slurm), "up")
    return [row("swarm-nodes.sh up (2 engines, swarm, image loaded)", [up_swarm]),
            row("slurm.sh up", [up_slurm])]  # fmt: skip


def tear_down() -> list[str]:
    down_slurm = timed(str(ENGINES / "slurm.sh"), "down")
    down_swarm = timed(str(ENGINES / "swarm-nodes.sh"), "down")
    return [row("slurm.sh down", [down_slurm]), row("swarm-nodes.sh down", [down_swarm])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--image", default="claude-orchestrator-base:bookworm")
    args = parser.parse_args()
    head = "| step | median s | min s | max s | n |\n|---|---|---|---|---|"
    rows = bring_up(args.image)
    kinds = {
        "docker run (main engine)": docker_run(args.image),
        "sbatch --wrap 'docker run' (submit to container)": sbatch_run(args.image),
        "docker run (node3 engine)": docker_run(args.image, NODE3),
        "replicated-job on node3 (create to container)": swarm_job(args.image),
    }
    samples: dict[str, list[float]] = {label: [] for label in kinds}
    try:
        with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
            for _ in range(args.reps):
                for label, submit in kinds.items():
                    samples[label].append(stamp_after(submit, Path(scratch)))
    finally:
        rows += tear_down()
    print(head, *rows, sep="\n")
    print()
    print(head, *(row(label, values) for label, values in samples.items()), sep="\n")


if __name__ == "__main__":
    main()
