"""Keeping a task's Claude Code session in the volume, so a later round resumes it.

Claude Code (2.1.330, checked with the real binary) writes a session to
``$CLAUDE_CONFIG_DIR/projects/<encoded cwd>/<session id>.jsonl``, where the encoded cwd is the
absolute working directory with every character other than a letter or digit replaced by ``-``
(``/tmp/a.b_c`` -> ``-tmp-a-b-c``); a name over 200 characters is cut to 200 and given a
hash suffix (``-yfdvxm``) whose function is not documented, so a session is found by its id
under ``projects/*/`` and the folder's name is recorded. Every line names the ``sessionId``
and the conversation's lines the ``cwd``. ``claude -p --resume <id>`` finds it only there, with the identical cwd, and
sends the earlier turns with the new prompt; the copy of the file into a fresh config dir is
enough (nothing else of the config dir is needed), and the resumed run keeps the session id.

:func:`save_session` copies the attempt's file into ``results/<id>/session/`` with a record
(:class:`SessionRecord`: task, attempt, cwd, session id); :func:`restore_session` puts it back
into the next round's config dir, after checking that it belongs to the task and the cwd. The
file is the agent's (its uid writes the config dir), so it is read without following links and
within a size limit, and it only ever goes back to the same task.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestration_protocol import Layout, atomic_write_bytes, utc_now
from orchestration_protocol.docstrings import describe_fields

SESSION_FOLDER = "session"
"""Folder of ``results/<id>/`` holding the task's saved session."""
RECORD_NAME = "session.json"
"""The record naming the saved session."""
MAX_SESSION_BYTES = 64 * 1024 * 1024
"""Largest session file kept."""
SESSION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


class SessionRecord(BaseModel):
    """``results/<id>/session/session.json``: which session of which attempt is kept."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True)

    task_id: str
    """The task the session belongs to."""
    attempt: int = Field(ge=1)
    """The attempt that ran it."""
    session_id: str = Field(pattern=SESSION_ID.pattern)
    """Claude Code's session id (a UUID)."""
    cwd: str
    """The working directory the session ran in; a resume must use the same."""
    project_dir: str = Field(pattern=r"^[A-Za-z0-9-]{1,255}$")
    """The folder of ``projects/`` Claude Code filed the session under (from the cwd)."""
    saved_at: datetime
    """When it was saved."""
    size_bytes: int = Field(ge=0)
    """Size of the saved session file."""


@dataclass(frozen=True)
class Restored:
    """What a round resumes: a session id, or None and why not (one sentence)."""

    session_id: str | None
    note: str | None = None


def encode_cwd(cwd: str) -> str:
    """The folder name Claude Code files a working directory's sessions under."""
    return _NOT_ALNUM.sub("-", cwd)


def session_dir(layout: Layout, task_id: str) -> Path:
    """Where a task's session is kept in the volume."""
    return layout.artifacts_dir(task_id) / SESSION_FOLDER


def session_id_of(transcript: list[str]) -> str | None:
    """The session id the CLI's stream-json output names (its ``result`` or ``init`` line)."""
    for line in reversed(transcript):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        found = event.get("session_id") if isinstance(event, dict) else None
        if isinstance(found, str) and SESSION_ID.match(found):
            return found
    return None


def resume_args(session_id: str | None) -> list[str]:
    """The CLI arguments that resume ``session_id`` (none for a fresh session)."""
    return ["--resume", session_id] if session_id else []


def _read_beneath(root: Path, parts: list[str], limit: int) -> bytes | None:
    """The bytes of ``root/parts...``, walking with ``O_NOFOLLOW`` at every step (no link, no
    special file, a single name), or None; refuses a file over ``limit``."""
    flags = os.O_RDONLY | os.O_NOFOLLOW
    try:
        fd = os.open(root, flags | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        file_fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_size > limit:
            return None
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None


def save_session(
    layout: Layout, task_id: str, attempt: int, config_dir: Path, cwd: Path, session_id: str | None
) -> str | None:
    """Copy the attempt's session into the volume; None when saved, else why not."""
    if session_id is None or not SESSION_ID.match(session_id):
        return "the agent's output named no session id, so no session was saved"
    project, data = _find_session(config_dir, str(cwd), session_id)
    if data is None:
        return (
            f"session {session_id} was not found under {config_dir}/projects (or is not a plain "
            f"file under {MAX_SESSION_BYTES // (1024 * 1024)} MiB), so no session was saved"
        )
    target = session_dir(layout, task_id)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target / f"{session_id}.jsonl", data)
    record = SessionRecord(
        task_id=task_id, attempt=attempt, session_id=session_id, cwd=str(cwd),
        project_dir=project, saved_at=utc_now(), size_bytes=len(data),
    )
    atomic_write_bytes(target / RECORD_NAME, record.model_dump_json(indent=2).encode() + b"\n")
    return None


def _find_session(config_dir: Path, cwd: str, session_id: str) -> tuple[str, bytes | None]:
    """The project folder and bytes of ``session_id``: under the encoded cwd, else under the
    one folder of ``projects/`` (a long cwd's name has a hash suffix) that holds it."""
    name = f"{session_id}.jsonl"
    folders = [encode_cwd(cwd)]
    with contextlib.suppress(OSError):
        folders += sorted(entry.name for entry in os.scandir(config_dir / "projects"))[:1000]
    for folder in folders:
        if re.fullmatch(r"[A-Za-z0-9-]{1,255}", folder):
            data = _read_beneath(config_dir, ["projects", folder, name], MAX_SESSION_BYTES)
            if data is not None:
                return folder, data
    return folders[0], None


def _load_record(folder: Path, task_id: str) -> SessionRecord | str:
    data = _read_beneath(folder, [RECORD_NAME], 64 * 1024)
    if data is None:
        return f"no saved session for task {task_id} (no {folder / RECORD_NAME})"
    try:
        return SessionRecord.model_validate_json(data)
    except ValidationError:
        return f"the session record {folder / RECORD_NAME} is not valid"


def _problem(record: SessionRecord, task_id: str, cwd: Path, data: bytes | None) -> str | None:
    if record.task_id != task_id:
        return f"the saved session belongs to task {record.task_id}, not {task_id}"
    if record.cwd != str(cwd):
        return (
            f"the saved session ran in {record.cwd} and this round works in {cwd}; Claude Code "
            "resumes a session only in the same directory"
        )
    if data is None:
        return f"the saved session file {record.session_id}.jsonl is missing or unreadable"
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            return f"the saved session file {record.session_id}.jsonl is not JSON lines"
        if not isinstance(entry, dict):
            return f"the saved session file {record.session_id}.jsonl is not JSON lines"
        if entry.get("sessionId", record.session_id) != record.session_id:
            return f"the saved session file holds lines of session {entry.get('sessionId')}"
        if entry.get("cwd", record.cwd) != record.cwd:
            return f"the saved session file holds lines of another directory ({entry.get('cwd')})"
    return None


def restore_session(
    layout: Layout, task_id: str, config_dir: Path, cwd: Path, owner: tuple[int, int] | None = None
) -> Restored:
    """Put the task's saved session into ``config_dir`` for a round working in ``cwd``; the id
    to resume, or None and one sentence why the round starts a fresh session."""
    folder = session_dir(layout, task_id)
    record = _load_record(folder, task_id)
    if isinstance(record, str):
        return Restored(None, f"{record}; this round starts a fresh session.")
    data = _read_beneath(folder, [f"{record.session_id}.jsonl"], MAX_SESSION_BYTES)
    problem = _problem(record, task_id, cwd, data)
    if problem is not None or data is None:
        return Restored(None, f"{problem}; this round starts a fresh session.")
    project = config_dir / "projects" / record.project_dir
    project.mkdir(parents=True, exist_ok=True)
    target = project / f"{record.session_id}.jsonl"
    atomic_write_bytes(target, data)
    if owner is not None:
        for path in (config_dir, config_dir / "projects", project, target):
            os.chown(path, *owner, follow_symlinks=False)
    return Restored(record.session_id)
