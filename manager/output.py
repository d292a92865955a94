"""Printing for the CLI: JSON for tools, rich text for people, one-sentence errors for both."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

from orchestration_protocol import InvalidFile, ProtocolError

from .errors import EXIT_BAD_INPUT, ManagerError


def console(stderr: bool = False) -> Console:
    """A console on the current stdout/stderr (made per call: tests swap the streams)."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160  # a pipe or a file: no terminal width to honour
    return Console(file=stream, highlight=False, width=width)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


def emit_json_line(data: Any) -> None:
    """Print ``data`` as one JSON line and flush (for streams such as ``watch --json``)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def exit_code_of(error: BaseException) -> int:
    if isinstance(error, ManagerError):
        return error.exit_code
    return EXIT_BAD_INPUT


def report_error(error: ManagerError | ProtocolError, as_json: bool) -> int:
    """Print the error's one sentence (JSON object with ``--json``); return its exit code."""
    code = exit_code_of(error)
    message = str(error)
    if isinstance(error, InvalidFile) and error.path and str(error.path) not in message:
        message = f"{error.path}: {message}"
    if as_json:
        emit_json({"error": message, "kind": type(error).__name__, "exit_code": code})
    else:
        typer.echo(f"error: {message}", err=True)
    return code
