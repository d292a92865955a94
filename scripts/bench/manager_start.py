"""Benchmark: manager container start to prompt (goal: under 5 s with the images built).

Run by hand (any Python >= 3.9; standard library only; needs Docker, tmux and the built
images)::

    python3 scripts/bench/manager_start.py [--runs N] [--json]

Each run starts ``./run.sh --simulate --repo <a local bare repo>`` in a detached tmux session,
as a person would in a terminal, and times it until Claude Code's input prompt is on the screen
(its status line ``auto mode on``). Beside it, in the same session of measurements:

- ``docker run --rm claude-orchestrator`` with ``true`` as the entrypoint: a bare container
  start of the same image (what no launcher can beat);
- ``./run.sh --simulate ... -- true``: run.sh's checks, the container, and entrypoint.sh's
  setup (git identity, clone, Claude Code settings, scripted model), without starting claude.

The difference between the last two and the first is what this project adds. ``--simulate``
only replaces the model: a real model answers nothing before the first prompt, so the time to
the prompt is the same with a token.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_SH = REPO_ROOT / "run.sh"
IMAGE = "claude-orchestrator"
READY = "auto mode on"
TIMEOUT_S = 60.0


def quiet(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=check)


def make_bare_repo(directory: Path) -> Path:
    """A bare repository with one commit on main, as the manager clones it."""
    seed, bare = directory / "seed", directory / "app.git"
    quiet("git", "init", "--quiet", "--initial-branch=main", str(seed))
    (seed / "README.md").write_text("# bench\n")
    quiet("git", "-C", str(seed), "add", ".")
    quiet(
        "git",
        "-C",
        str(seed),
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@example.invalid",
        "commit",
        "--quiet",
        "-m",
        "initial",
    )
    quiet("git", "clone", "--quiet", "--bare", str(seed), str(bare))
    return bare


def time_bare_container() -> float:
    start = time.monotonic()
    quiet("docker", "run", "--rm", "--entrypoint", "true", IMAGE)
    return time.monotonic() - start


def run_sh_command(bare: Path, volume: str, name: str) -> list[str]:
    return [str(RUN_SH), "--simulate", "--repo", str(bare), "--volume", volume, "--name", name]


def time_setup(bare: Path, volume: str) -> float:
    name = f"bench-manager-{secrets.token_hex(3)}"
    start = time.monotonic()
    quiet(*run_sh_command(bare, volume, name), "--", "true")
    return time.monotonic() - start


def time_to_prompt(bare: Path, volume: str, env: dict[str, str]) -> float:
    token = secrets.token_hex(3)
    session, name = f"bench-{token}", f"bench-manager-{token}"
    command = run_sh_command(bare, volume, name)
    start = time.monotonic()
    tmux = ["tmux", "-L", session]  # its own server, so the session gets this environment
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", session, "-x", "200", "-y", "50", "--", *command],
        env=env,
        check=True,
    )
    try:
        while time.monotonic() - start < TIMEOUT_S:
            screen = quiet(*tmux, "capture-pane", "-p", "-t", session, check=False).stdout
            if READY in screen:
                return time.monotonic() - start
            time.sleep(0.02)
        raise SystemExit(f"the prompt did not appear within {TIMEOUT_S:g}s:\n{screen}")
    finally:
        socket = quiet(*tmux, "display-message", "-p", "#{socket_path}", check=False).stdout
        quiet(*tmux, "kill-server", check=False)
        if socket.strip():
            Path(socket.strip()).unlink(missing_ok=True)
        remove_container(name)


def remove_container(name: str) -> None:
    """Remove it and wait until it is gone (``--rm`` may be removing it already)."""
    quiet("docker", "rm", "-f", name, check=False)
    for _ in range(150):
        if quiet("docker", "container", "inspect", name, check=False).returncode != 0:
            return
        time.sleep(0.2)


def summarize(label: str, samples: list[float]) -> dict[str, object]:
    return {
        "what": label,
        "median_s": round(statistics.median(samples), 2),
        "min_s": round(min(samples), 2),
        "max_s": round(max(samples), 2),
        "runs": len(samples),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measurements of each (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    for tool in ("docker", "tmux", "git"):
        if shutil.which(tool) is None:
            print(f"manager_start.py: {tool} is not installed.", file=sys.stderr)
            return 3
    if quiet("docker", "image", "inspect", IMAGE, check=False).returncode != 0:
        print(
            f"manager_start.py: {IMAGE} is not built; run scripts/build-images.sh.", file=sys.stderr
        )
        return 3
    volume = f"bench-{secrets.token_hex(3)}"
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    env.setdefault("TERM", "xterm-256color")
    with tempfile.TemporaryDirectory(prefix="manager-start-") as scratch:
        bare = make_bare_repo(Path(scratch))
        try:
            time_to_prompt(bare, volume, env)  # warm-up: creates the volume and fills caches
            rows = [
                summarize(
                    "docker run --rm (entrypoint true)",
                    [time_bare_container() for _ in range(args.runs)],
                ),
                summarize(
                    "run.sh --simulate -- true (setup, no claude)",
                    [time_setup(bare, volume) for _ in range(args.runs)],
                ),
                summarize(
                    "run.sh --simulate to the prompt",
                    [time_to_prompt(bare, volume, env) for _ in range(args.runs)],
                ),
            ]
        finally:
            quiet("docker", "volume", "rm", "-f", volume, check=False)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("| what | median | min | max | runs |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['what']} | {row['median_s']} s | {row['min_s']} s | {row['max_s']} s "
            f"| {row['runs']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
