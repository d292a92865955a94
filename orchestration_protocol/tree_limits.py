"""How big a change is, measured on its uncompressed content, and the caps both sides hold it to.

A git bundle stores one blob once, however many paths hold it, and compresses it: 21 hard links to
one 99 MiB file made a 101 KB bundle that wrote 2,080 MiB into the manager's clone. So the size
of a change is the sum of the full size of every path it adds or changes (a blob held at ten
paths counts ten times), read from git's object database with ``git diff-tree`` and ``git
cat-file --batch-check``: nothing is checked out and no content is read. The worker runtime
measures its commit before it bundles or pushes it; ``orchestrator merge`` measures a task's
commit before it writes a tree.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from .docstrings import describe_fields

MiB = 1024 * 1024
GITLINK_MODE = "160000"
DEFAULT_MAX_FILE_BYTES = 100 * MiB
DEFAULT_MAX_TOTAL_BYTES = 512 * MiB
ENV_MAX_CHANGE_BYTES = "ORCHESTRATOR_MAX_CHANGE_BYTES"
"""Overrides :attr:`ChangeLimits.max_total_bytes`, for the manager's merge and (forwarded by the
spawner) for workers."""


class ChangeLimits(BaseModel):
    """The caps on one task's change, on its uncompressed content."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra=describe_fields, defer_build=True
    )

    max_file_bytes: int = Field(default=DEFAULT_MAX_FILE_BYTES, gt=0)
    """Largest single file the change may add or change."""
    max_total_bytes: int = Field(default=DEFAULT_MAX_TOTAL_BYTES, gt=0)
    """Most bytes all the paths the change adds or changes may hold together (every path in
    full: hard links and duplicate blobs count once per path)."""


def change_limits(env: Mapping[str, str] | None = None) -> ChangeLimits:
    """The caps, with ``$ORCHESTRATOR_MAX_CHANGE_BYTES`` as the total when it is set."""
    env = os.environ if env is None else env
    total = env.get(ENV_MAX_CHANGE_BYTES)
    return ChangeLimits(max_total_bytes=int(total)) if total else ChangeLimits()


@dataclass(frozen=True)
class ChangeSize:
    """What a change holds, path by path in full."""

    total_bytes: int
    """Sum of the sizes of every path added or changed."""
    paths: int
    """How many paths were added or changed (deletions are not counted)."""
    largest_path: str | None
    """The largest of them, if any."""
    largest_bytes: int
    """Its size."""


class TreeUnreadable(RuntimeError):
    """git could not list or size the change (a missing commit, a broken repository)."""


def measure_change(
    git: Sequence[str], base: str | None, head: str, env: dict[str, str] | None = None
) -> ChangeSize:
    """The size of ``head``'s change from ``base`` (its whole tree when ``base`` is None).
    ``git`` is the command that reaches the repository, e.g. ``["git", "-C", clone]``."""
    entries = _changed_blobs(git, base, head, env)
    sizes = _blob_sizes(git, [sha for sha, _ in entries], env)
    total, largest, largest_bytes = 0, None, 0
    for (_, path), size in zip(entries, sizes, strict=True):
        total += size
        if size > largest_bytes:
            largest, largest_bytes = path, size
    return ChangeSize(total, len(entries), largest, largest_bytes)


def change_problem(
    git: Sequence[str],
    base: str | None,
    head: str,
    limits: ChangeLimits,
    env: dict[str, str] | None = None,
) -> str | None:
    """One sentence saying why the change is over ``limits`` (or cannot be measured); None when
    it is within them."""
    try:
        size = measure_change(git, base, head, env)
    except TreeUnreadable as error:
        return f"its size could not be measured ({error})"
    return size_problem(size, limits)


def size_problem(size: ChangeSize, limits: ChangeLimits) -> str | None:
    """Why ``size`` is over ``limits``, in one sentence; None when it is not."""
    if size.largest_bytes > limits.max_file_bytes:
        return (
            f"the file {size.largest_path} is {size.largest_bytes / MiB:.0f} MiB, over the "
            f"limit of {limits.max_file_bytes / MiB:.0f} MiB"
        )
    if size.total_bytes > limits.max_total_bytes:
        return (
            f"the change holds {size.total_bytes / MiB:.0f} MiB in {size.paths} files (each "
            f"path counted in full), over the limit of {limits.max_total_bytes / MiB:.0f} MiB"
        )
    return None


def _run(git: Sequence[str], args: list[str], env: dict[str, str] | None, stdin: bytes = b"") -> bytes:
    done = subprocess.run(
        [*git, *args], input=stdin, capture_output=True, env=env, check=False
    )
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise TreeUnreadable(f"git {args[0]}: {said[-1] if said else 'failed'}")
    return done.stdout


def _changed_blobs(
    git: Sequence[str], base: str | None, head: str, env: dict[str, str] | None
) -> list[tuple[str, str]]:
    """(blob id, path) of every file ``head`` adds or changes; submodules are left out."""
    if base is None:
        out = _run(git, ["ls-tree", "-r", "-z", "--full-tree", head], env)
        entries = []
        for record in out.split(b"\0"):
            if record:
                meta, _, path = record.partition(b"\t")
                mode, _, sha = meta.decode().split(" ")
                if mode != GITLINK_MODE:
                    entries.append((sha, path.decode(errors="replace")))
        return entries
    out = _run(git, ["diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", base, head], env)
    fields = out.split(b"\0")
    entries = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        _, new_mode, _, new_sha, status = meta.decode().lstrip(":").split(" ")
        if status != "D" and new_mode != GITLINK_MODE:
            entries.append((new_sha, path.decode(errors="replace")))
    return entries


def _blob_sizes(git: Sequence[str], shas: list[str], env: dict[str, str] | None) -> list[int]:
    """The size of each blob, in order (one answer per line asked, duplicates included)."""
    if not shas:
        return []
    stdin = "".join(f"{sha}\n" for sha in shas).encode()
    out = _run(git, ["cat-file", "--batch-check=%(objectsize)"], env, stdin)
    answers = out.decode().split()
    if len(answers) != len(shas) or not all(answer.isdigit() for answer in answers):
        raise TreeUnreadable("git cat-file: a blob of the change is missing")
    return [int(answer) for answer in answers]
