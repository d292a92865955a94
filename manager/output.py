"""Printing for the CLI: JSON for tools, rich text for people, one-sentence errors for both."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.segment import Segment

from orchestration_protocol import InvalidFile, ProtocolError
from orchestration_protocol.untrusted import escape_controls

from .errors import EXIT_BAD_INPUT, ManagerError


class EscapingStream(io.TextIOBase):
    """A text stream that shows control characters as visible escapes before they reach the
    terminal (:func:`escape_controls`): what the CLI prints holds text that came from agents
    (output, logs, errors, file names, a planner's prompts), and an OSC or CSI sequence in it
    must not set the title, write the clipboard, clear the screen or fake colours."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.raw, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return getattr(self.raw, "errors", None) or "strict"

    def write(self, text: str) -> int:
        self.raw.write(escape_controls(text))
        return len(text)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return self.raw.isatty()

    def fileno(self) -> int:
        return self.raw.fileno()


def raw_stream(stream: TextIO) -> TextIO:
    """The stream under an :class:`EscapingStream` (rich writes its own colours there)."""
    return stream.raw if isinstance(stream, EscapingStream) else stream


@contextmanager
def escaped_output() -> Iterator[None]:
    """While inside, ``sys.stdout`` and ``sys.stderr`` escape control characters."""
    saved = sys.stdout, sys.stderr
    sys.stdout = EscapingStream(raw_stream(sys.stdout))
    sys.stderr = EscapingStream(raw_stream(sys.stderr))
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


class SafeConsole(Console):
    """A rich console that escapes control characters in every piece of text it renders,
    whatever the renderable (tables, text, live views), while the colours and cursor moves that
    rich adds itself still work."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            segment if segment.control else segment._replace(text=escape_controls(segment.text))
            for segment in buffer
        )


def console(stderr: bool = False) -> Console:
    """A console on the current stdout/stderr (made per call: tests swap the streams)."""
    stream = raw_stream(sys.stderr if stderr else sys.stdout)
    width = None if stream.isatty() else 160  # a pipe or a file: no terminal width to honour
    return SafeConsole(file=stream, highlight=False, width=width)


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout, indented to the depth a person reads: its top level,
    and one item of a long list per line (those lines by json's C encoder, which an indented
    dump never uses: ``status --json`` on 10,000 tasks spent half its time indenting)."""
    sys.stdout.write(readable_json(data) + "\n")
    sys.stdout.flush()


LONG_LIST = 50
"""From this many items on, a list prints one compact item per line."""
COMPACT = json.JSONEncoder(default=str)
"""The encoder of those lines, made once (``json.dumps`` with an option makes one per call)."""


def readable_json(data: Any, depth: int = 0) -> str:
    """``data`` as JSON: nested objects and short lists indented by two spaces, each item of a
    long list compact on a line of its own."""
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(data, dict) and data:
        items = (f"{inner}{json.dumps(str(k))}: {readable_json(v, depth + 1)}" for k, v in data.items())
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(data, list) and len(data) >= LONG_LIST:
        compact = (f"{inner}{COMPACT.encode(item)}" for item in data)
        return "[\n" + ",\n".join(compact) + f"\n{pad}]"
    if isinstance(data, list) and data:
        items = (f"{inner}{readable_json(item, depth + 1)}" for item in data)
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(data, default=str)


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
