"""Benchmark of git through the volume: a worker's clone from the mirror, and the manager's refresh.

Run by hand (host processes only, no Docker, nothing leaves the machine)::

    .venv/bin/python scripts/bench/mirror.py [--quick] [--runs N] [--files N] [--commits N]

It prints markdown tables (ready for the README):

1. A worker's clone, the way the runtime does it: ``worker.repo.prepare`` with a ``Workspace``
   (a ``--shared`` bare clone of the mirror as the runtime's private repository, then a
   ``--no-hardlinks`` clone as the agent's work tree, on the task's branch, handed to uid 1000
   when run as root), beside the way workers cloned before the mirror, measured in the same run:
   ``git clone --no-tags`` from the remote and ``checkout -B`` the task's branch. The remote is
   a local bare repository, cloned both by path (git hardlinks the objects: the best case) and
   by ``file://`` URL (git packs and sends them, as a network remote does, minus the network).
2. The manager's ``ensure_mirror`` when the remote has not changed (a lock, a credential-free
   ``git fetch``), beside the bare ``git fetch`` it wraps; and its first call (the mirror made).

Two repositories are generated with ``git fast-import`` in a temporary directory: a small one
(20 files, 10 commits) and a medium one (2,000 files of about 3 KB, 300 commits each changing
10 files). Medians of ``--runs`` interleaved runs (default 7; ``--quick`` 3, medium repository
1,000 files and 100 commits). Default run: under a minute; ``--quick``: about 15 seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from manager.git.mirror import REFRESH_REFSPECS, ensure_mirror
from orchestration_protocol import Layout
from orchestration_protocol.mirrors import mirror_dir
from worker import repo

AGENT_OWNER = (1000, 1000)
"""The agent's uid and gid in a worker container (the runtime hands it the work tree)."""
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
]


@dataclass(frozen=True)
class RepoShape:
    """What to generate."""

    name: str
    files: int
    commits: int
    changes_per_commit: int
    file_bytes: int = 3000


def _content(rng: random.Random, size: int, salt: int) -> bytes:
    lines, length = [], 0
    while length < size:
        line = f"{salt} " + " ".join(rng.choice(WORDS) for _ in range(10)) + "\n"
        lines.append(line)
        length += len(line)
    return "".join(lines).encode()


def fast_import_stream(shape: RepoShape, seed: int = 1) -> bytes:
    """A ``git fast-import`` stream: all files in the first commit, then a few changed per commit."""
    rng = random.Random(seed)
    paths = [f"src/pkg{i // 100:02d}/module_{i:05d}.py" for i in range(shape.files)]
    out: list[bytes] = []
    stamp = 1_700_000_000
    for number in range(shape.commits):
        changed = (
            paths if number == 0 else rng.sample(paths, min(shape.changes_per_commit, len(paths)))
        )
        message = f"commit {number}\n".encode()
        out.append(b"commit refs/heads/main\n")
        out.append(
            f"committer Bench <bench@example.invalid> {stamp + number * 60} +0000\n".encode()
        )
        out.append(b"data %d\n%s" % (len(message), message))
        for path in changed:
            data = _content(rng, shape.file_bytes, number)
            out.append(f"M 100644 inline {path}\n".encode())
            out.append(b"data %d\n%s\n" % (len(data), data))
    return b"".join(out)


def make_remote(directory: Path, shape: RepoShape) -> Path:
    """A bare repository of ``shape`` (packed, as a hosted remote serves it)."""
    remote = directory / f"{shape.name}-remote.git"
    subprocess.run(
        ["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True
    )
    subprocess.run(
        ["git", f"--git-dir={remote}", "fast-import", "--quiet"],
        input=fast_import_stream(shape),
        check=True,
    )
    subprocess.run(["git", f"--git-dir={remote}", "gc", "--quiet"], check=True)
    return remote


def repo_size(path: Path) -> str:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return f"{total / 1e6:.1f} MB"


# --- the measured operations ---------------------------------------------------------------------


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def worker_clone(mirror: Path, url: str, scratch: Path, run: int) -> float:
    """``worker.repo.prepare``: what a worker does before its agent starts."""
    workspace = repo.Workspace(
        private=scratch / f"private-{run}", agent_root=scratch / f"agent-{run}"
    )
    workspace.private.mkdir(mode=0o700)
    workspace.agent_root.mkdir(mode=0o755)
    owner = AGENT_OWNER if os.geteuid() == 0 else None
    try:
        return timed(lambda: repo.prepare(workspace, mirror, url, None, f"bench-{run}", owner))
    finally:
        shutil.rmtree(workspace.private)
        shutil.rmtree(workspace.agent_root)


def plain_clone(source: str, scratch: Path, run: int) -> float:
    """What a worker did before the mirror: clone from the remote, then the task's branch."""
    target = scratch / f"plain-{run}"

    def clone() -> None:
        subprocess.run(["git", "clone", "--quiet", "--no-tags", source, str(target)], check=True)
        subprocess.run(
            ["git", "-C", str(target), "checkout", "--quiet", "-B", f"orchestrator/bench-{run}"],
            check=True,
        )

    try:
        return timed(clone)
    finally:
        shutil.rmtree(target)


def bare_fetch(mirror: Path, url: str) -> float:
    return timed(
        lambda: subprocess.run(
            [
                "git",
                f"--git-dir={mirror}",
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                "--no-write-fetch-head",
                "--",
                url,
                *REFRESH_REFSPECS,
            ],
            check=True,
        )
    )


# --- tables --------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def bench_repo(directory: Path, shape: RepoShape, runs: int) -> tuple[list[str], list[str]]:
    """Clone rows and refresh rows for one repository."""
    remote = make_remote(directory, shape)
    layout = Layout(directory / f"{shape.name}-root").ensure()
    url = str(remote)
    created = timed(lambda: ensure_mirror(layout, url, credentials={}))
    mirror = mirror_dir(layout, url)
    scratch = directory / f"{shape.name}-scratch"
    scratch.mkdir()
    samples: dict[str, list[float]] = {
        "mirror": [],
        "path": [],
        "file": [],
        "ensure": [],
        "fetch": [],
    }
    worker_clone(mirror, url, scratch, -1)  # warm the page cache for every method alike
    plain_clone(f"file://{remote}", scratch, -1)
    for run in range(runs):
        samples["mirror"].append(worker_clone(mirror, url, scratch, run))
        samples["path"].append(plain_clone(str(remote), scratch, run))
        samples["file"].append(plain_clone(f"file://{remote}", scratch, run))
        samples["ensure"].append(timed(lambda: ensure_mirror(layout, url, credentials={})))
        samples["fetch"].append(bare_fetch(mirror, url))
    med = {key: statistics.median(values) for key, values in samples.items()}
    label = (
        f"{shape.name} ({shape.files:,} files, {shape.commits} commits, {repo_size(remote)} packed)"
    )
    clones = [
        f"| {label} | **{ms(med['mirror'])}** | {ms(med['path'])} | {ms(med['file'])} "
        f"| {med['mirror'] / med['path']:.2f}x | {med['mirror'] / med['file']:.2f}x |"
    ]
    refresh = [
        f"| {label} | **{ms(med['ensure'])}** | {ms(med['fetch'])} "
        f"| {(med['ensure'] - med['fetch']) * 1000:+.0f} ms | {ms(created)} |"
    ]
    return clones, refresh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs, a smaller medium repo")
    parser.add_argument("--runs", type=int, help="runs per measure (default 7, quick 3)")
    parser.add_argument("--files", type=int, help="files in the medium repo (default 2000)")
    parser.add_argument("--commits", type=int, help="commits in the medium repo (default 300)")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 7)
    shapes = [
        RepoShape("small", 20, 10, 3),
        RepoShape(
            "medium",
            args.files or (1000 if args.quick else 2000),
            args.commits or (100 if args.quick else 300),
            10,
        ),
    ]
    began = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    git_version = subprocess.run(
        ["git", "--version"], capture_output=True, text=True
    ).stdout.strip()
    print("# Git through the volume\n")
    print(
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {git_version}"
    )
    print(f"- temporary directory: {directory}; medians of {runs} interleaved runs")
    print(
        f"- runtime as {'root (work tree handed to uid 1000)' if os.geteuid() == 0 else 'a user'}\n"
    )
    clone_rows, refresh_rows = [], []
    try:
        for shape in shapes:
            clones, refresh = bench_repo(directory, shape, runs)
            clone_rows += clones
            refresh_rows += refresh
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print("## A worker's clone\n")
    print(
        "| repository | from the volume's mirror (`repo.prepare`) | baseline: `git clone` "
        "by path | baseline: `git clone file://` | mirror / path | mirror / file:// |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(clone_rows) + "\n")
    print(
        "`repo.prepare` makes two clones (the runtime's private `--shared` one and the agent's "
        "`--no-hardlinks` work tree) and hands the work tree to the agent's uid; a clone by "
        "path hardlinks the remote's objects, one by `file://` packs them as a network remote "
        "would (without the network: a real remote costs more).\n"
    )
    print("## The manager's mirror refresh, nothing changed\n")
    print(
        "| repository | `ensure_mirror` | baseline: the bare `git fetch` it runs | overhead "
        "| first `ensure_mirror` (mirror made) |"
    )
    print("|---|---:|---:|---:|---:|")
    print("\n".join(refresh_rows) + "\n")
    print(f"Total run time: {time.monotonic() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
