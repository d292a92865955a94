"""The contract between the manager (or any spawner) and a worker, beside the files: the
environment a worker reads, the names of secrets, and what a worker's exit code means.

A spawner sets these variables; a person running ``orchestrator-worker`` on a host sets them by
hand. A worker holds no secret: model requests go through the gateway with a caller token the
runtime mints for its claim, and git goes through the volume's mirror. The secret names are what
the manager and the gateway read (files in ``$ORCHESTRATOR_SECRETS_DIR``, default
``/run/orchestrator-secrets``, else the environment) and what a spawner never passes on.
"""

from __future__ import annotations

import os
from enum import IntEnum
from pathlib import Path

from . import tree_limits

ENV_ROOT = "ORCHESTRATION_DIR"
"""The orchestration root (the shared volume's mount point)."""
ENV_WORKER_ID = "WORKER_ID"
"""Who the worker is in claims and status (the container name in Docker)."""
ENV_REPO_URL = "REPO_URL"
"""Repository for tasks that name none."""
ENV_REPO_BRANCH = "REPO_BRANCH"
"""Branch for tasks that name none."""
ENV_MODEL = "ANTHROPIC_MODEL"
"""Model for tasks that name none."""
ENV_LEASE_S = "ORCHESTRATOR_LEASE_S"
"""Lease of a claim without a heartbeat, in seconds."""
ENV_HEARTBEAT_S = "ORCHESTRATOR_HEARTBEAT_S"
"""Seconds between heartbeats."""
ENV_SECRETS_DIR = "ORCHESTRATOR_SECRETS_DIR"
"""Where the manager and the gateway read secrets from (never a worker)."""
ENV_CONTAINER = "ORCHESTRATOR_CONTAINER"
"""The worker's container name, when it runs in one."""
ENV_AGENT_USER = "ORCHESTRATOR_AGENT_USER"
"""``uid[:gid]`` the agent runs as (the runtime starts as root to switch to it)."""
ENV_EGRESS_ALLOW = "ORCHESTRATOR_EGRESS_ALLOW"
"""Comma-separated host names the agent may reach through the gateway's egress proxy."""
ENV_IDLE_TIMEOUT_S = "ORCHESTRATOR_IDLE_TIMEOUT_S"
"""Seconds an agent may print nothing before it is stopped."""
ENV_POOL = "ORCHESTRATOR_POOL"
"""A warm pool's worker (``orchestrator-worker --warm``): the pool it belongs to."""
ENV_POOL_PROFILE = "ORCHESTRATOR_POOL_PROFILE"
"""A warm pool's worker: the profile of the tasks it may take."""
ENV_MAX_CHANGE_BYTES = tree_limits.ENV_MAX_CHANGE_BYTES
"""Most bytes one task's change may hold, every path in full (default 512 MiB)."""
ENV_MAX_LOG_BYTES = "ORCHESTRATOR_MAX_LOG_BYTES"
"""Most bytes of the agent's output one attempt writes to ``logs/<id>.log`` (default 64 MiB)."""
ENV_MAX_OUTPUT_BYTES = "ORCHESTRATOR_MAX_OUTPUT_BYTES"
"""Most bytes of the result's ``output`` (default 256 KiB; the rest is cut with a marker)."""
ENV_MAX_BUDGET_USD = "ORCHESTRATOR_MAX_BUDGET_USD"
"""The task's budget, passed to Claude Code as ``--max-budget-usd``."""
ENV_PROFILE = "ORCHESTRATOR_PROFILE"
"""The name of the profile the worker was started with (named in a check's ``source``)."""
ENV_PROFILE_CHECK = "ORCHESTRATOR_PROFILE_CHECK"
"""The profile's ``check`` as a JSON list of commands (unset: the profile has none)."""
LIMIT_ENV = (ENV_MAX_CHANGE_BYTES, ENV_MAX_LOG_BYTES, ENV_MAX_OUTPUT_BYTES)
"""Limits the manager forwards from its environment to every worker."""
ENV_GATEWAY_DIR = "ORCHESTRATOR_GATEWAY_DIR"
"""Where the gateway's sockets (``api.sock``, ``proxy.sock``) are; default ``gateway/`` in the
root. On a multi-node engine a node-local directory that only that node's gateway and workers
mount (a Unix socket connects processes of one host only)."""
ENV_GATEWAY_NODE = "ORCHESTRATOR_GATEWAY_NODE"
"""The node a gateway runs on (its engine's node id), written into its ledger lines."""
DEFAULT_SECRETS_DIR = Path("/run/orchestrator-secrets")

SECRET_NAMES = (
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "GIT_TOKEN",
    "GIT_SSH_KEY",
)
"""Secret names: each is a file of that name in the secrets dir (or, on a host, an env var).
``GIT_SSH_KEY`` holds a private key; ``GIT_TOKEN`` an HTTPS token for the clone and push."""

PASSTHROUGH_ENV = (
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "CLOUD_ML_REGION",
    "ANTHROPIC_VERTEX_PROJECT_ID",
)
"""Non-secret settings for the agent that the spawner forwards from the manager's environment:
the model, and which provider's API Claude Code speaks (the gateway holds the credential)."""


class WorkerExit(IntEnum):
    """What a worker's exit code means."""

    OK = 0
    """It ran its attempt and wrote the result (whatever the task's outcome)."""
    CRASHED = 1
    """It failed unexpectedly; a result may be missing (the manager recovers the attempt)."""
    USAGE = 2
    """It was started wrongly (bad arguments or settings); nothing was claimed."""
    NOTHING_TO_CLAIM = 3
    """The task could not be claimed (taken, finished, cancelled or out of attempts)."""
    CLAIM_LOST = 4
    """Its claim passed to a successor; the successor owns the result."""


def read_secret(name: str, secrets_dir: Path | None = None) -> str | None:
    """A secret's value from its file in the secrets dir, else from the environment."""
    directory = secrets_dir or Path(os.environ.get(ENV_SECRETS_DIR) or DEFAULT_SECRETS_DIR)
    try:
        value = (directory / name).read_text().strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        value = ""
    return value or os.environ.get(name) or None
