"""Errors of the file protocol, each named by the condition it reports.

Every error subclasses :class:`ProtocolError` and a builtin, so callers can catch the family or
the kind. ``str(error)`` is one sentence that names the file (where there is one) and the problem.
"""

from __future__ import annotations

from pathlib import Path


class ProtocolError(Exception):
    """Base of every error raised by ``orchestration_protocol``."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path
        """The protocol file the error is about, when there is one."""


class InvalidTaskId(ProtocolError, ValueError):
    """A task id does not match ``^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$``."""


class InvalidFile(ProtocolError, ValueError):
    """A protocol file cannot be used as it is; subclasses say why."""


class UnsafeFile(InvalidFile):
    """A symlink, a directory or another non-regular file where a JSON file belongs."""


class FileTooLarge(InvalidFile):
    """A protocol file is larger than the protocol allows."""


class UnparsableFile(InvalidFile):
    """A protocol file is not valid UTF-8 JSON."""


class SchemaViolation(InvalidFile):
    """A protocol file is JSON but does not match its model (wrong type, unknown field, ...)."""


class UnsupportedSchemaVersion(InvalidFile):
    """A protocol file declares a ``schema_version`` this code does not speak."""


class IdMismatch(InvalidFile):
    """The id inside a file differs from the id in its file name."""


class ClaimLost(ProtocolError, RuntimeError):
    """A worker tried to write under an attempt that no longer holds the task's claim."""


class TaskNotFound(ProtocolError, LookupError):
    """No task file exists for the given id."""
