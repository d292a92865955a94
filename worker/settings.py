"""How a worker is configured: :class:`WorkerSettings`, read from the environment the
contract names (``orchestration_protocol.contract``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from orchestration_protocol.claims import default_worker_id
from orchestration_protocol.contract import (
    ENV_AGENT_USER,
    ENV_CONTAINER,
    ENV_EGRESS_ALLOW,
    ENV_GATEWAY_DIR,
    ENV_GATEWAY_NODE,
    ENV_HEARTBEAT_S,
    ENV_IDLE_TIMEOUT_S,
    ENV_LEASE_S,
    ENV_MODEL,
    ENV_REPO_BRANCH,
    ENV_REPO_URL,
    ENV_WORKER_ID,
)
from orchestration_protocol.paths import default_root

from .repo import Limits


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
    gateway_dir: Path | None = None
    """Where the gateway's sockets are (``$ORCHESTRATOR_GATEWAY_DIR``); None: in the root."""
    gateway_node: str | None = None
    """The node of that gateway (``$ORCHESTRATOR_GATEWAY_NODE``): only it serves the token."""


def parse_user(value: str) -> tuple[int, int]:
    """``uid[:gid]`` as numbers; ValueError for anything else or for root."""
    uid, _, gid = value.partition(":")
    user = (int(uid), int(gid or uid))
    if user[0] == 0:
        raise ValueError(f"{ENV_AGENT_USER}={value}: the agent never runs as root")
    return user


def resolve_worker_settings(
    root: Path | None = None, worker_id: str | None = None, env: Mapping[str, str] | None = None
) -> WorkerSettings:
    """The worker's settings: explicit values, then the contract's environment variables, then
    defaults (the default root, this host's worker id)."""
    env = os.environ if env is None else env
    user = env.get(ENV_AGENT_USER)
    return WorkerSettings(
        root=root or default_root(),
        worker_id=worker_id or env.get(ENV_WORKER_ID) or default_worker_id(),
        repo_url=env.get(ENV_REPO_URL) or None,
        repo_branch=env.get(ENV_REPO_BRANCH) or None,
        model=env.get(ENV_MODEL) or None,
        lease_s=float(env.get(ENV_LEASE_S) or 30),
        heartbeat_s=float(env.get(ENV_HEARTBEAT_S) or 5),
        container=env.get(ENV_CONTAINER) or None,
        agent_user=parse_user(user) if user else None,
        egress_allow=[h for h in env.get(ENV_EGRESS_ALLOW, "").split(",") if h.strip()],
        idle_timeout_s=float(env.get(ENV_IDLE_TIMEOUT_S) or 300),
        gateway_dir=Path(env[ENV_GATEWAY_DIR]) if env.get(ENV_GATEWAY_DIR) else None,
        gateway_node=env.get(ENV_GATEWAY_NODE) or None,
    )
