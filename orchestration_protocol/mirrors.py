"""Where the volume keeps a mirror of a task repository: ``git/<name>-<hash>.git``.

The manager makes and refreshes the mirror with its own credentials; workers clone from it and
push their task branch (``refs/heads/orchestrator/<id>``) back into it, with no network and no
credential. The name is derived from the URL alone, so manager and worker agree without talking.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .paths import Layout

MIRRORS_DIR = "git"
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def mirror_name(url: str) -> str:
    """``<last part of the URL without .git>-<sha256(url)[:12]>.git``, safe as a file name."""
    last = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    name = UNSAFE.sub("-", last).strip(".-")[:40] or "repo"
    return f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.git"


def mirror_dir(layout: Layout, url: str) -> Path:
    """The bare mirror of ``url`` in the volume."""
    return layout.root / MIRRORS_DIR / mirror_name(url)
