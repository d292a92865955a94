"""``orchestrator`` and ``spawn-worker``: thin commands over the manager's modules.

Every command that prints takes ``--json``; exit codes are in :mod:`manager.errors`
(0 ok, 1 some task did not succeed, 2 bad input, 3 machine not ready, 4 not finished, 130
interrupted). A failure a user can cause is one sentence naming the thing and the fix.
"""

import signal
from collections.abc import Sequence

import typer

from .commands import app, spawn_worker_app
from .commands.common import hoist_global_options, interrupt
from .errors import EXIT_BAD_INPUT, EXIT_OK
from .output import escaped_output


def _run(typer_app: typer.Typer, argv: Sequence[str] | None, prog: str) -> int:
    signal.signal(signal.SIGTERM, interrupt)
    try:
        with escaped_output():
            typer_app(args=list(argv) if argv is not None else None, prog_name=prog)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_BAD_INPUT)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``orchestrator``."""
    import sys

    args = list(argv) if argv is not None else sys.argv[1:]
    return _run(app, hoist_global_options(args), "orchestrator")


def spawn_worker_main(argv: Sequence[str] | None = None) -> int:
    """``spawn-worker PROFILE TASK_ID``."""
    return _run(spawn_worker_app, argv, "spawn-worker")
