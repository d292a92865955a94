"""Where the manager keeps its bare mirror of each task repository on the volume.

The manager fetches a repository into ``git/<name>-<hash>.git`` with its own credentials (see
``manager/git/mirror.py``); a worker clones from that path (no network, no credential) and pushes its
task branch, ``refs/heads/orchestrator/<id>``, back into it; ``orchestrator merge`` and
``orchestrator push`` read task branches from there. Both sides find the mirror with
:func:`mirror_dir` from the same URL string (the task's ``repo``, else ``$REPO_URL``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .paths import Layout, validate_task_id

MIRRORS_DIR = "git"
MIRROR_SUFFIX = ".git"
LOCK_SUFFIX = ".lock"
NAME_MAX = 40
HASH_CHARS = 12
TASK_BRANCH_PREFIX = "orchestrator/"
UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def mirrors_dir(layout: Layout) -> Path:
    """``<root>/git``: every mirror and its lock file."""
    return layout.root / MIRRORS_DIR


def mirror_name(url: str) -> str:
    """``<name>-<sha256(url)[:12]>.git``: the URL's last path part (without ``.git``, only
    ``[A-Za-z0-9._-]``, at most 40 characters) and a hash that tells apart equal names."""
    last = re.split(r"[/:\\]", url.strip().rstrip("/"))[-1]
    last = last.removesuffix(MIRROR_SUFFIX)
    name = UNSAFE_NAME_CHARS.sub("-", last).lstrip(".-")[:NAME_MAX] or "repo"
    digest = hashlib.sha256(url.encode()).hexdigest()[:HASH_CHARS]
    return f"{name}-{digest}{MIRROR_SUFFIX}"


def mirror_dir(layout: Layout, url: str) -> Path:
    """The bare mirror of ``url`` on the volume (it may not exist yet)."""
    return mirrors_dir(layout) / mirror_name(url)


def mirror_lock_file(layout: Layout, url: str) -> Path:
    """The lock file held while the manager creates or refreshes the mirror of ``url``."""
    return mirrors_dir(layout) / f"{mirror_name(url)}{LOCK_SUFFIX}"


def task_branch(task_id: str) -> str:
    """``orchestrator/<id>``: the branch a worker pushes into the mirror."""
    return f"{TASK_BRANCH_PREFIX}{validate_task_id(task_id)}"


def task_ref(task_id: str) -> str:
    """``refs/heads/orchestrator/<id>``: the full name of :func:`task_branch`."""
    return f"refs/heads/{task_branch(task_id)}"
