"""How a worker is configured: the environment variables it reads.

The spawner (``manager``) sets these; a person running ``orchestrator-worker`` on a host sets
them by hand. A worker holds no secret: model requests go through the gateway with a caller
token the runtime mints for its claim, and git goes through the volume's mirror. The secret
names below are what the manager and the gateway read (files in ``$ORCHESTRATOR_SECRETS_DIR``,
default ``/run/orchestrator-secrets``, else the environment) and what a worker strips from its
agent's environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .repo import Limits

ENV_ROOT = "ORCHESTRATION_DIR"
ENV_WORKER_ID = "WORKER_ID"
ENV_REPO_URL = "REPO_URL"
ENV_REPO_BRANCH = "REPO_BRANCH"
ENV_MODEL = "ANTHROPIC_MODEL"
ENV_LEASE_S = "ORCHESTRATOR_LEASE_S"
ENV_HEARTBEAT_S = "ORCHESTRATOR_HEARTBEAT_S"
ENV_SECRETS_DIR = "ORCHESTRATOR_SECRETS_DIR"
ENV_CONTAINER = "ORCHESTRATOR_CONTAINER"
ENV_AGENT_USER = "ORCHESTRATOR_AGENT_USER"
ENV_EGRESS_ALLOW = "ORCHESTRATOR_EGRESS_ALLOW"
ENV_IDLE_TIMEOUT_S = "ORCHESTRATOR_IDLE_TIMEOUT_S"
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


class WorkerSettings(BaseModel):
    """Everything a worker process needs besides the task file."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    root: Path
    """The orchestration root (the shared volume)."""
    worker_id: str
    """Who this worker is in claims and status (the container name in Docker)."""
    repo_url: str | None = None
    """Repository to clone when the task names none."""
    repo_branch: str | None = None
    """Branch to start from when the task names none (None: the remote's default)."""
    model: str | None = None
    """Model when the task names none."""
    lease_s: float = Field(default=30.0, gt=0)
    """Lease of a claim without a heartbeat."""
    heartbeat_s: float = Field(default=5.0, gt=0)
    """Seconds between heartbeats (well under the lease)."""
    container: str | None = None
    """Container name, when running in one."""
    agent_user: tuple[int, int] | None = None
    """uid and gid the agent runs as (the runtime must start as root to switch); None runs the
    agent as the runtime's own user (a trusted host, the local backend)."""
    egress_allow: list[str] = Field(default_factory=list)
    """Host names the agent may reach through the gateway's egress proxy (the profile's)."""
    idle_timeout_s: float = Field(default=300.0, gt=0)
    """An agent that prints nothing for this long is stopped and its result says so."""
    limits: Limits = Field(default_factory=Limits)
    """Size limits on what the runtime commits and saves."""


def parse_user(value: str) -> tuple[int, int]:
    """``uid[:gid]`` as numbers; ValueError for anything else or for root."""
    uid, _, gid = value.partition(":")
    user = (int(uid), int(gid or uid))
    if user[0] == 0:
        raise ValueError(f"{ENV_AGENT_USER}={value}: the agent never runs as root")
    return user


def read_secret(name: str, secrets_dir: Path | None = None) -> str | None:
    """A secret's value from its file in the secrets dir, else from the environment."""
    directory = secrets_dir or Path(os.environ.get(ENV_SECRETS_DIR) or DEFAULT_SECRETS_DIR)
    try:
        value = (directory / name).read_text().strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        value = ""
    return value or os.environ.get(name) or None
