"""Running a child process under supervision: output streamed line by line, and stopped
(SIGTERM to its process group, then SIGKILL) when the attempt is cancelled, times out, or the
worker itself is told to stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TERM_GRACE_S = 3.0
POLL_S = 1.0
"""How often a supervised process's stop reasons are looked at (a cancel, the time limit, the
worker's own stop). Every look costs CPU: at 0.1 s they were most of a ``sleep 20`` agent's
cost (45 of 55 ms)."""
MAX_LINE_BYTES = 4 * 1024 * 1024
"""Longest output line handed on whole; the rest of a longer one is dropped, with a marker."""
READ_CHUNK = 64 * 1024
OOM_FIRST = '{ echo 1000 > /proc/self/oom_score_adj; } 2>/dev/null; exec "$@"'
"""Run before the agent's command: the kernel's OOM killer takes the agent (and everything it
starts, which inherits the score) before the runtime, whose score stays as it was."""


@dataclass
class ProcessOutcome:
    """How a supervised process ended."""

    exit_code: int
    """Its exit code (negative: killed by that signal)."""
    stopped_because: str | None
    """Why the worker stopped it (the stop reason), or None when it ended by itself."""


READER_DRAIN_S = 30.0
"""How long the agent's output may take to drain after it exited."""


def run_supervised(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    on_line: Callable[[str], None],
    should_stop: Callable[[], str | None],
    stdin_text: str | None = None,
    poll_s: float = POLL_S,
    user: tuple[int, int] | None = None,
    reap_user: bool = False,
) -> ProcessOutcome:
    """Run ``command``, feeding each output line (stdout and stderr merged) to ``on_line``.

    Its end is seen at once (a thread waits for it); ``should_stop`` is asked every ``poll_s``
    meanwhile; when it returns a reason, the process group gets SIGTERM, then SIGKILL after a
    grace period. ``user`` (uid, gid) runs it as that user with no
    supplementary groups and, as the uid is not 0, no capabilities. ``reap_user`` then kills
    every process of that uid once the command ends (what it left behind in sessions of its
    own, which the group kill misses): only in a container, where the pid namespace holds no
    one else's processes of that uid.
    """
    process = _start(command, cwd, env, stdin_text is not None, user)
    reader = threading.Thread(target=_pump, args=(process, on_line), daemon=True)
    reader.start()
    if stdin_text is not None and process.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(stdin_text.encode())
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
    ended = threading.Event()
    threading.Thread(target=_wait_for, args=(process, ended), daemon=True).start()
    stopped_because = None
    while not ended.wait(poll_s):
        reason = should_stop()
        if reason is not None:
            stopped_because = reason
            _terminate_group(process)
            break
    exit_code = process.wait()
    if user is not None and reap_user:
        kill_every_process_of(user)
    # the last lines may still be in the pipe: on a loaded machine the reader can take seconds to
    # drain it (an empty output was seen at a load of 20); a process the agent left holding the
    # pipe open ends the wait after READER_DRAIN_S instead of never
    reader.join(timeout=READER_DRAIN_S)
    if process.stdout is not None:
        process.stdout.close()
    return ProcessOutcome(exit_code=exit_code, stopped_because=stopped_because)


def _wait_for(process: subprocess.Popen[bytes], ended: threading.Event) -> None:
    process.wait()
    ended.set()


def _start(
    command: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    with_stdin: bool,
    user: tuple[int, int] | None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own, first raising its OOM score (``OOM_FIRST``)."""
    return subprocess.Popen(
        ["/bin/sh", "-c", OOM_FIRST, "agent", *command],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        user=user[0] if user else None,
        group=user[1] if user else None,
        extra_groups=[] if user else None,
        umask=0o022 if user else -1,
    )


def kill_every_process_of(user: tuple[int, int]) -> None:
    """SIGKILL every process of ``user``'s uid in this pid namespace: ``kill(-1)`` as that uid,
    which the kernel applies to all of them at once (none can fork away meanwhile)."""
    signal_every_process_of(user, "SIGKILL")


def signal_every_process_of(user: tuple[int, int], signal_name: str) -> None:
    """Send ``signal_name`` (``SIGKILL``, ``SIGSTOP``, ``SIGCONT``) to every process of
    ``user``'s uid in this pid namespace, as that uid (``kill(-1)``): only for a uid of its own,
    as in a worker container."""
    if signal_name not in ("SIGKILL", "SIGSTOP", "SIGCONT"):
        raise ValueError(f"signal {signal_name!r} is not one the runtime sends to the agent")
    subprocess.run(
        # the shell's builtin: no interpreter to start; kill(-1) spares the shell itself
        ["/bin/sh", "-c", f"kill -{signal_name.removeprefix('SIG')} -1"],
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
    reader = LineReader(on_line)
    fd = process.stdout.fileno()
    while chunk := os.read(fd, READ_CHUNK):
        reader.feed(chunk)
    reader.finish()


class LineReader:
    """Splits a byte stream into lines of at most ``max_bytes``, in memory bounded by that: the
    rest of a longer line is dropped and the line ends with a marker saying how long it was."""

    def __init__(self, on_line: Callable[[str], None], max_bytes: int = MAX_LINE_BYTES) -> None:
        self.on_line, self.max_bytes = on_line, max_bytes
        self.buffer = bytearray()
        self.dropped = 0
        """Bytes of the current line not kept (over ``max_bytes``)."""

    def feed(self, chunk: bytes) -> None:
        while chunk:
            end = chunk.find(b"\n")
            part, chunk = (chunk, b"") if end < 0 else (chunk[:end], chunk[end + 1 :])
            room = self.max_bytes - len(self.buffer)
            self.buffer += part[:room]
            self.dropped += max(0, len(part) - room)
            if end >= 0:
                self._emit()

    def finish(self) -> None:
        if self.buffer or self.dropped:
            self._emit()

    def _emit(self) -> None:
        line = self.buffer.decode("utf-8", errors="replace")
        if self.dropped:
            line += f" [line cut: {len(self.buffer) + self.dropped} bytes, over {self.max_bytes}]"
        self.buffer, self.dropped = bytearray(), 0
        self.on_line(line)


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
