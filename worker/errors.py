"""Errors of the worker runtime, named by condition."""

from __future__ import annotations


class WorkerError(Exception):
    """Base of the worker's errors; ``str()`` is one sentence for the result's ``error``."""


class GitFailed(WorkerError, RuntimeError):
    """A git command failed (clone, commit, bundle)."""


class NoRepository(WorkerError, ValueError):
    """Neither the task nor the worker's settings name a repository to clone."""


class AgentNotFound(WorkerError, FileNotFoundError):
    """The agent's executable (e.g. ``claude``) is not installed."""


class ClaudeNotFound(AgentNotFound):
    """No ``claude`` binary was found (``$CLAUDE_BIN``, ``PATH``, ``claude_agent_sdk``)."""


class WorkTreeRefused(WorkerError, ValueError):
    """The agent left something the runtime will not take: a file or a patch over its size
    limit, too many files, or a symlink out of the clone."""


class GatewayUnavailable(WorkerError, ConnectionError):
    """The gateway's socket is not there or does not answer, so the agent could not reach a model."""
