"""Finding the real ``claude`` binary: ``$CLAUDE_BIN``, ``PATH``, or the one bundled in the
``claude-agent-sdk`` wheel (``claude_agent_sdk/_bundled/claude``); this project pins
``claude-agent-sdk==0.2.187`` (Claude Code 2.1.330)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from .errors import ClaudeNotFound

CLAUDE_BIN_ENV = "CLAUDE_BIN"
"""Environment variable naming the ``claude`` binary to use."""

SDK_PIN = "claude-agent-sdk==0.2.187"
"""The pinned wheel that carries the binary."""


def find_claude() -> Path:
    """The ``claude`` binary: ``$CLAUDE_BIN``, then ``claude`` on ``PATH``, then the one bundled
    in the installed ``claude_agent_sdk`` package. Raises :class:`ClaudeNotFound` naming the fix."""
    explicit = os.environ.get(CLAUDE_BIN_ENV)
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ClaudeNotFound(f"${CLAUDE_BIN_ENV} is {explicit}, which is not an executable file")
    on_path = shutil.which("claude")
    if on_path:
        return Path(on_path)
    bundled = _bundled_claude()
    if bundled is not None:
        return bundled
    raise ClaudeNotFound(
        f"no claude binary found: set ${CLAUDE_BIN_ENV}, put claude on PATH, "
        f"or `pip install {SDK_PIN}`"
    )


def _bundled_claude() -> Path | None:
    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "_bundled" / "claude"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None
