"""Processes on this host that outlive the command that started them (local workers, the local
scripted model and gateway): started under a small supervisor (``python -m
manager.backends.local.processes``) in a session of their own, recognised later by pid and start time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from orchestration_protocol import atomic_write_bytes

from ...errors import SpawnFailed

RECORDS_DIR = ".workers"
"""Where local workers and services are recorded under the root (hidden: never a protocol file)."""


def start_detached(
    command: Sequence[str],
    *,
    output: Path,
    env: dict[str, str] | None = None,
    exit_file: Path | None = None,
    secrets_dir: Path | None = None,
) -> int:
    """Start ``command`` under a supervisor in its own session that outlives this process (and
    is not this process's child, so nothing is left to reap); return the supervisor's pid."""
    launcher = [sys.executable, "-m", "manager.backends.local.processes", "--output", str(output)]
    if exit_file is not None:
        launcher += ["--exit-file", str(exit_file)]
    if secrets_dir is not None:
        launcher += ["--secrets-dir", str(secrets_dir)]
    started = subprocess.run(
        [*launcher, "--", *command],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if started.returncode != 0 or not started.stdout.strip().isdigit():
        reason = (started.stderr.strip().splitlines() or ["no output"])[-1]
        raise SpawnFailed(f"Could not start {command[0]} ({reason}); check the installation.")
    return int(started.stdout.strip())


def process_start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` (to tell it from a later process with the same pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


# --- the supervisor ------------------------------------------------------------------------------


def supervise(argv: Sequence[str] | None = None) -> int:
    """Detach (print the supervisor's pid and let the launcher return), then run the command
    with its output in ``--output``, forward SIGTERM/SIGINT to it, record its exit code and
    remove its secrets directory."""
    parser = argparse.ArgumentParser(prog="python -m manager.backends.local.processes")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--exit-file", type=Path)
    parser.add_argument("--secrets-dir", type=Path)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        os._exit(0)
    os.setsid()
    out = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    worker = subprocess.Popen(args.command)
    if args.exit_file is not None:
        atomic_write_bytes(args.exit_file.with_suffix(".pid"), str(worker.pid).encode())

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            worker.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = worker.wait()
    code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says
    if args.secrets_dir is not None:
        shutil.rmtree(args.secrets_dir, ignore_errors=True)
    if args.exit_file is not None:
        atomic_write_bytes(args.exit_file, f"{code}\n".encode())
    return code


if __name__ == "__main__":
    sys.exit(supervise())
