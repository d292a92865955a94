"""Reading and writing protocol files safely.

Writes are atomic (temp file in the same directory, fsync, rename, fsync the directory), so a
reader sees a whole file or none. ``create_exclusive`` publishes a file only if none exists, with
``link(2)``, which is atomic on local filesystems and on NFS. Reads refuse symlinks and oversize
files and turn every way a file can be wrong into an :class:`InvalidFile` that names it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from .errors import (
    FileTooLarge,
    IdMismatch,
    SchemaViolation,
    UnparsableFile,
    UnsafeFile,
    UnsupportedSchemaVersion,
)

MAX_FILE_BYTES = 1024 * 1024
"""Protocol JSON files larger than this are refused unread."""

ModelT = TypeVar("ModelT", bound=BaseModel)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def fsync_directory(directory: Path) -> None:
    """Make a rename or link in ``directory`` durable (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:  # some filesystems refuse fsync on directories
        if error.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes) -> Path:
    temp = _temp_path(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    os.close(fd)
    return temp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old file or the new, never a mix."""
    temp = _write_temp(path, data)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_directory(path.parent)


def create_exclusive(path: Path, data: bytes) -> bool:
    """Publish ``data`` at ``path`` only if nothing is there; True when this call created it."""
    temp = _write_temp(path, data)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)
    fsync_directory(path.parent)
    return True


def read_bytes_safely(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, refusing symlinks, non-files and files over ``max_bytes``.

    Raises FileNotFoundError when the file does not exist.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafeFile(
                f"{path} is a symlink; protocol files are never followed.", path
            ) from error
        if error.errno == errno.EISDIR:
            raise UnsafeFile(f"{path} is a directory, not a protocol file.", path) from error
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{path} is not a regular file; remove it.", path)
        if info.st_size > max_bytes:
            raise FileTooLarge(
                f"{path} is {info.st_size} bytes, over the {max_bytes}-byte limit; shorten it.",
                path,
            )
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise FileTooLarge(f"{path} grew past the {max_bytes}-byte limit while read.", path)
        return data
    finally:
        os.close(fd)


def _describe_validation_error(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"field '{where}': {message}")
    more = len(error.errors()) - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def parse_model(data: bytes, model: type[ModelT], path: Path) -> ModelT:
    """Validate ``data`` as ``model``; any problem becomes an InvalidFile naming ``path``."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise UnparsableFile(
            f"{path} is not valid JSON ({error}); fix or remove it.", path
        ) from error
    if not isinstance(document, dict):
        raise SchemaViolation(
            f"{path} must hold a JSON object, not {type(document).__name__}.", path
        )
    try:
        return model.model_validate(document)
    except ValidationError as error:
        text = _describe_validation_error(error)
        if any(item["loc"] == ("schema_version",) for item in error.errors()):
            raise UnsupportedSchemaVersion(f"{path}: {text}.", path) from error
        raise SchemaViolation(
            f"{path} does not match the {model.__name__} schema: {text}.", path
        ) from error
    except (ValueError, TypeError, RecursionError) as error:
        raise SchemaViolation(f"{path} could not be validated: {error}.", path) from error


def read_model(path: Path, model: type[ModelT], expected_id: str | None = None) -> ModelT:
    """Read and validate one protocol file; check its id against the file name if given.

    Raises FileNotFoundError when absent and an InvalidFile subclass for everything else.
    """
    instance = parse_model(read_bytes_safely(path), model, path)
    if expected_id is not None:
        found = getattr(instance, "id", None) or getattr(instance, "task_id", None)
        if found != expected_id:
            raise IdMismatch(
                f"{path} holds id {found!r} but its name says {expected_id!r}; "
                "rename the file or fix the id.",
                path,
            )
    return instance


def read_model_if_exists(
    path: Path, model: type[ModelT], expected_id: str | None = None
) -> ModelT | None:
    """Like :func:`read_model`, but None when the file does not exist."""
    try:
        return read_model(path, model, expected_id)
    except FileNotFoundError:
        return None
