"""How a worker is configured: the environment variables and secret files it reads.

The spawner (``manager``) sets these; a person running ``orchestrator-worker`` on a host sets
them by hand. Non-secret settings come from the environment. Secrets come from files in
``$ORCHESTRATOR_SECRETS_DIR`` (default ``/run/orchestrator-secrets``), one file per name below,
copied into the container before it starts, so they never show in ``docker inspect``; on a host
they may also come from the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

ENV_ROOT = "ORCHESTRATION_DIR"
ENV_WORKER_ID = "WORKER_ID"
ENV_REPO_URL = "REPO_URL"
ENV_REPO_BRANCH = "REPO_BRANCH"
ENV_MODEL = "ANTHROPIC_MODEL"
ENV_LEASE_S = "ORCHESTRATOR_LEASE_S"
ENV_HEARTBEAT_S = "ORCHESTRATOR_HEARTBEAT_S"
ENV_SECRETS_DIR = "ORCHESTRATOR_SECRETS_DIR"
ENV_CONTAINER = "ORCHESTRATOR_CONTAINER"
DEFAULT_SECRETS_DIR = Path("/run/orchestrator-secrets")

SECRET_NAMES = (
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GIT_TOKEN",
    "GIT_SSH_KEY",
)
"""Secret names: each is a file of that name in the secrets dir (or, on a host, an env var).
``GIT_SSH_KEY`` holds a private key; ``GIT_TOKEN`` an HTTPS token for the clone and push."""

PASSTHROUGH_ENV = (
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_MODEL",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "ANTHROPIC_VERTEX_PROJECT_ID",
    "CLOUD_ML_REGION",
)
"""Non-secret settings for the agent that the spawner forwards from the manager's environment."""


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
    secrets_dir: Path = DEFAULT_SECRETS_DIR
    """Where secret files are mounted or copied."""
    container: str | None = None
    """Container name, when running in one."""


def read_secret(name: str, secrets_dir: Path | None = None) -> str | None:
    """A secret's value from its file in the secrets dir, else from the environment."""
    directory = secrets_dir or Path(os.environ.get(ENV_SECRETS_DIR) or DEFAULT_SECRETS_DIR)
    try:
        value = (directory / name).read_text().strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        value = ""
    return value or os.environ.get(name) or None
