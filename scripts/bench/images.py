"""Benchmark of the container images: their sizes and how long rebuilds take.

Run by hand (any Python >= 3.9; standard library only)::

    python3 scripts/bench/images.py [--runs N] [--code-change] [--cold] [-- BUILD-IMAGES-ARGS]

BUILD-IMAGES-ARGS go to ``scripts/build-images.sh`` (default ``--offline``). It prints markdown
tables (ready for the README):

1. Rebuild times. One catch-up build first (it brings the images up to date, so it may take
   long), then ``--runs`` builds with nothing changed (the no-op rebuild: every step cached).
   ``--code-change`` adds the rebuild after a one-line change in the project's code, measured on
   a copy of the repository under temporary image names, so neither the work tree nor the
   images in use are touched. ``--cold`` adds a first build from nothing (a new base from
   mmdebstrap, the claude-agent-sdk wheel downloaded again, no layer cache), also under temporary
   names, removed afterwards; it needs Debian's mirror and PyPI and takes minutes.
2. Image sizes: each image uncompressed (what it takes on a node's disk) and as ``docker save
   IMAGE | gzip -c`` (what a registry or a copy to another node moves), beside the same figures
   of the images the names pointed at before this run (the previous build) and of the base; the
   bytes only it holds among the images listed, and the disk all of them take together (layers
   shared between images counted once).

The image names are build-images.sh's: WORKER_IMAGE, MANAGER_IMAGE, OFFLINE_BASE_IMAGE and
CLI_IMAGE from the environment, or their defaults. To compare against another build, tag it with
those names before the run: the catch-up build then replaces them, and the table shows both.
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
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = Path("scripts") / "build-images.sh"
# What a copy of the repository needs to build the images (see .dockerignore for the rest).
COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.pyc",
    "*.egg-info",
    "build",
    "dist",
    ".cache",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "tests",
    ".ci",
)


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def cli_image_name(root: Path) -> str:
    for line in (root / "scripts" / "claude-cli.Dockerfile").read_text().splitlines():
        if line.startswith("ARG CLAUDE_CODE_VERSION="):
            return "claude-orchestrator-cli:" + line.split("=", 1)[1].strip()
    raise SystemExit("scripts/claude-cli.Dockerfile has no 'ARG CLAUDE_CODE_VERSION=' line")


def build(root: Path, args: list[str], env: dict[str, str] | None = None) -> float:
    """Run build-images.sh; return its wall time in seconds. Its output goes to a log file."""
    with tempfile.NamedTemporaryFile(
        prefix="bench-images-", suffix=".log", delete=False, mode="w"
    ) as log:
        started = time.monotonic()
        proc = subprocess.run(
            ["bash", str(root / BUILD_SCRIPT), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        elapsed = time.monotonic() - started
    if proc.returncode != 0:
        tail = Path(log.name).read_text().splitlines()[-15:]
        raise SystemExit(
            f"build-images.sh {' '.join(args)} failed (exit {proc.returncode}); "
            f"log: {log.name}\n" + "\n".join(tail)
        )
    os.unlink(log.name)
    return elapsed


def copy_repository(destination: Path) -> Path:
    shutil.copytree(REPO_ROOT, destination, ignore=COPY_IGNORE, symlinks=True)
    return destination


def remove_images(names: list[str]) -> None:
    present = [name for name in names if image_exists(name)]
    if present:
        subprocess.run(["docker", "rmi", *present], capture_output=True)


def measure_code_change(args: list[str]) -> float:
    """Rebuild after a one-line code change, in a copy, under temporary image names."""
    env = {"WORKER_IMAGE": "claude-worker:bench", "MANAGER_IMAGE": "claude-orchestrator:bench"}
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        root = copy_repository(Path(tmp) / "repo")
        try:
            build(root, args, env)  # the copy as it is: all cached, or brought up to date
            module = root / "orchestration_protocol" / "__init__.py"
            module.write_text(module.read_text() + f"\n# bench edit {time.time()}\n")
            return build(root, args, env)
        finally:
            remove_images(list(env.values()))


def remove_descendants(base: str) -> None:
    """Remove the untagged images built on `base` (the build cache of a temporary base)."""
    base_id = docker("image", "inspect", "--format", "{{.Id}}", base).strip()
    parents = {}
    for image_id in set(docker("images", "--all", "--quiet", "--no-trunc").split()):
        parents[image_id] = docker("image", "inspect", "--format", "{{.Parent}}", image_id).strip()

    def depth(image_id: str) -> int:  # generations below base_id, or -1 if not a descendant
        steps = 0
        while image_id and image_id != base_id:
            image_id, steps = parents.get(image_id, ""), steps + 1
        return steps if image_id == base_id else -1

    for image_id in sorted(parents, key=depth, reverse=True):
        if depth(image_id) > 0:
            subprocess.run(["docker", "rmi", image_id], capture_output=True)


def measure_cold(args: list[str]) -> float:
    """A first build from nothing: new base, new CLI download, no cache; temporary names."""
    env = {
        "OFFLINE_BASE_IMAGE": "claude-orchestrator-base:bench-cold",
        "CLI_IMAGE": "claude-orchestrator-cli:bench-cold",
        "WORKER_IMAGE": "claude-worker:bench-cold",
        "MANAGER_IMAGE": "claude-orchestrator:bench-cold",
    }
    cold_args = [a for a in args if a not in ("--offline", "--rebuild-base")]
    remove_images(list(reversed(env.values())))
    try:
        # A freshly made base has a new id, so no step of the builds after it can be cached.
        return build(REPO_ROOT, ["--offline", "--rebuild-base", *cold_args], env)
    finally:
        remove_images([env["MANAGER_IMAGE"], env["WORKER_IMAGE"], env["CLI_IMAGE"]])
        if image_exists(env["OFFLINE_BASE_IMAGE"]):
            remove_descendants(env["OFFLINE_BASE_IMAGE"])
        remove_images([env["OFFLINE_BASE_IMAGE"]])


def history_layers(image: str) -> list[tuple[str, int]]:
    """(key, bytes) of each step of an image; the key is the same for a step shared by images."""
    rows = docker(
        "history", "--no-trunc", "--human=false", "--format", "{{json .}}", image
    ).splitlines()
    layers = []
    for row in map(json.loads, rows):
        size = int(row["Size"])
        key = (
            row["ID"]
            if row["ID"] != "<missing>"
            else (f"{row['CreatedAt']}|{row['CreatedBy']}|{size}")
        )
        layers.append((key, size))
    return layers


def image_names() -> list[str]:
    """The images build-images.sh makes, named as it names them (same environment variables)."""
    worker = os.environ.get("WORKER_IMAGE") or "claude-worker"
    manager = os.environ.get("MANAGER_IMAGE") or "claude-orchestrator"
    cli = os.environ.get("CLI_IMAGE") or cli_image_name(REPO_ROOT)
    bases = [os.environ.get("OFFLINE_BASE_IMAGE") or "claude-orchestrator-base:bookworm"]
    if image_exists(worker):  # the base the worker was built on, from its label
        label = '{{index .Config.Labels "org.opencontainers.image.base.name"}}'
        built_on = docker("image", "inspect", "--format", label, worker).strip()
        if built_on and built_on not in bases:
            bases.insert(0, built_on)
    profiles = [
        f"claude-{p.name}"
        for p in sorted((REPO_ROOT / "worker" / "profiles").glob("*"))
        if (p / "Dockerfile").is_file()
    ]
    return [*bases, cli, worker, manager, *profiles]


@dataclass(frozen=True)
class Sizes:
    """What one image takes, in bytes."""

    image_id: str
    uncompressed: int
    """On a node's disk: ``docker image inspect --format {{.Size}}``."""
    gzipped: int
    """``docker save IMAGE | gzip -c | wc -c``: what a registry or a copy to a node moves."""


_GZIPPED: dict[str, int] = {}
"""The gzipped size of each image id measured in this run: an unchanged image is measured once."""


def gzipped_bytes(image_id: str) -> int:
    if image_id not in _GZIPPED:
        save = subprocess.Popen(["docker", "save", image_id], stdout=subprocess.PIPE)
        gzip = subprocess.Popen(["gzip", "-c"], stdin=save.stdout, stdout=subprocess.PIPE)
        assert save.stdout is not None and gzip.stdout is not None
        save.stdout.close()  # gzip holds the pipe now
        total = 0
        while chunk := gzip.stdout.read(1 << 20):
            total += len(chunk)
        if gzip.wait() != 0 or save.wait() != 0:
            raise SystemExit(f"docker save {image_id} | gzip -c failed")
        _GZIPPED[image_id] = total
    return _GZIPPED[image_id]


def measure_sizes(images: list[str]) -> dict[str, Sizes]:
    """The sizes of the images among ``images`` that exist, by name."""
    sizes = {}
    for name in images:
        if image_exists(name):
            image_id, size = docker(
                "image", "inspect", "--format", "{{.Id}} {{.Size}}", name
            ).split()
            sizes[name] = Sizes(image_id, int(size), gzipped_bytes(image_id))
    return sizes


def megabytes(sizes: Sizes) -> str:
    return f"{sizes.uncompressed / 1e6:.0f} MB / {sizes.gzipped / 1e6:.0f} MB"


def before_column(now: Sizes, before: Sizes | None) -> str:
    if before is None:
        return "(not built)"
    if before.image_id == now.image_id:
        return "unchanged"
    ratio = now.uncompressed / before.uncompressed
    return f"{megabytes(before)} (now {ratio:.2f}x)"


def size_table(images: list[str], before: dict[str, Sizes]) -> list[str]:
    now = measure_sizes(images)
    present = list(now)
    layers = {name: history_layers(name) for name in present}
    owners: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    for name, steps in layers.items():
        for key, size in steps:
            owners.setdefault(key, set()).add(name)
            sizes[key] = size
    lines = [
        "| image | uncompressed / `docker save \\| gzip -c` | before this run |"
        " only in this image | layers |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in present:
        own = sum(size for key, size in layers[name] if owners[key] == {name})
        count = len(
            json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", name))
        )
        lines.append(
            f"| {name} | {megabytes(now[name])} | {before_column(now[name], before.get(name))}"
            f" | {own / 1e6:.0f} MB | {count} |"
        )
    lines.append(f"| **all of them on disk** | **{sum(sizes.values()) / 1e6:.0f} MB** | | | |")
    for name in images:
        if name not in present:
            lines.append(f"| {name} | (not built) | | | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    build_args = ["--offline"]
    if "--" in argv:
        build_args = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="no-op rebuilds to time (default 3)")
    parser.add_argument(
        "--code-change",
        action="store_true",
        help="also time the rebuild after a one-line code change (on a copy)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="also time a first build from nothing (minutes; needs the network)",
    )
    options = parser.parse_args(argv)
    if shutil.which("docker") is None:
        raise SystemExit("the docker command is not installed")

    engine = docker("version", "--format", "{{.Server.Version}}").strip()
    storage = docker("info", "--format", "{{.Driver}}").strip()
    print(
        f"Docker engine {engine}, storage driver {storage}, {os.cpu_count()} CPUs, load "
        f"{' '.join(f'{load:.2f}' for load in os.getloadavg())}; "
        f"build-images.sh {' '.join(build_args)}\n"
    )
    images = image_names()
    before = measure_sizes(images)  # the previous build, before this run replaces it

    times: list[tuple[str, str]] = []
    if options.cold:
        times.append(
            (
                "first build from nothing (base, CLI download, worker, manager)",
                f"{measure_cold(build_args):.1f} s",
            )
        )
    times.append(
        ("catch-up build (brings the images up to date)", f"{build(REPO_ROOT, build_args):.1f} s")
    )
    noop = [build(REPO_ROOT, build_args) for _ in range(max(options.runs, 1))]
    times.append(
        (
            f"no-op rebuild, nothing changed (median of {len(noop)})",
            f"{statistics.median(noop):.2f} s (min {min(noop):.2f}, max {max(noop):.2f})",
        )
    )
    if options.code_change:
        times.append(
            (
                "rebuild after a one-line code change (worker and manager)",
                f"{measure_code_change(build_args):.1f} s",
            )
        )

    print("| build | wall time |\n|---|---:|")
    for what, value in times:
        print(f"| {what} | {value} |")
    print()
    images += [name for name in image_names() if name not in images]  # a base named anew
    print("\n".join(size_table(images, before)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
