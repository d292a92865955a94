"""Running a child process under supervision: output streamed line by line, and stopped
(SIGTERM to its process group, then SIGKILL) when the attempt is cancelled, times out, or the
worker itself is told to stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TERM_GRACE_S = 3.0


@dataclass
class ProcessOutcome:
    """How a supervised process ended."""

    exit_code: int
    """Its exit code (negative: killed by that signal)."""
    stopped_because: str | None
    """Why the worker stopped it (the stop reason), or None when it ended by itself."""


def run_supervised(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_line: Callable[[str], None],
    should_stop: Callable[[], str | None],
    stdin_text: str | None = None,
    poll_s: float = 0.1,
    user: tuple[int, int] | None = None,
    reap_user: bool = False,
) -> ProcessOutcome:
    """Run ``command``, feeding each output line (stdout and stderr merged) to ``on_line``.

    ``should_stop`` is asked every ``poll_s``; when it returns a reason, the process group gets
    SIGTERM, then SIGKILL after a grace period. ``user`` (uid, gid) runs it as that user with no
    supplementary groups and, as the uid is not 0, no capabilities. ``reap_user`` then kills
    every process of that uid once the command ends (what it left behind in sessions of its
    own, which the group kill misses): only in a container, where the pid namespace holds no
    one else's processes of that uid.
    """
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        user=user[0] if user else None,
        group=user[1] if user else None,
        extra_groups=[] if user else None,
        umask=0o022 if user else -1,
    )
    reader = threading.Thread(target=_pump, args=(process, on_line), daemon=True)
    reader.start()
    if stdin_text is not None and process.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(stdin_text.encode())
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
    stopped_because = None
    while process.poll() is None:
        reason = should_stop()
        if reason is not None:
            stopped_because = reason
            _terminate_group(process)
            break
        time.sleep(poll_s)
    exit_code = process.wait()
    if user is not None and reap_user:
        kill_every_process_of(user)
    reader.join(timeout=5)
    if process.stdout is not None:
        process.stdout.close()
    return ProcessOutcome(exit_code=exit_code, stopped_because=stopped_because)


def kill_every_process_of(user: tuple[int, int]) -> None:
    """SIGKILL every process of ``user``'s uid in this pid namespace: ``kill(-1)`` as that uid,
    which the kernel applies to all of them at once (none can fork away meanwhile)."""
    subprocess.run(
        [sys.executable, "-c", "import os, signal; os.kill(-1, signal.SIGKILL)"],
        user=user[0],
        group=user[1],
        extra_groups=[],
        env={},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


def _pump(process: subprocess.Popen[bytes], on_line: Callable[[str], None]) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        on_line(raw.decode("utf-8", errors="replace").rstrip("\n"))


def _terminate_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, wait, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # helpers the agent left behind
