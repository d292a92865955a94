"""How a worker is configured: :class:`WorkerSettings`, read from the environment the
contract names (``orchestration_protocol.contract``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

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
    ENV_MAX_BUDGET_USD,
    ENV_MAX_CHANGE_BYTES,
    ENV_MAX_LOG_BYTES,
    ENV_MAX_OUTPUT_BYTES,
    ENV_MODEL,
    ENV_POOL,
    ENV_POOL_PROFILE,
    ENV_PROFILE,
    ENV_PROFILE_CHECK,
    ENV_REPO_BRANCH,
    ENV_REPO_URL,
    ENV_WORKER_ID,
)
from orchestration_protocol.paths import default_root
from orchestration_protocol.tree_limits import DEFAULT_MAX_TOTAL_BYTES

from .repo import Limits

KiB, MiB = 1024, 1024 * 1024
ENV_KEEP_WORKDIR = "ORCHESTRATOR_KEEP_WORKDIR"
ENV_GIT_USER_NAME, ENV_GIT_USER_EMAIL = "GIT_USER_NAME", "GIT_USER_EMAIL"
Provider = Literal["anthropic", "bedrock", "vertex"]


class WorkerSettings(BaseModel):
    """Everything a worker process needs besides the task file."""

    model_config = ConfigDict(extra="forbid")  # no schema is made: its docstrings are not read

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
    max_log_bytes: int = Field(default=64 * MiB, gt=0)
    """Most bytes of the agent's output one attempt writes to its log (then one marker line)."""
    max_output_bytes: int = Field(default=256 * KiB, gt=0)
    """Most bytes of the result's ``output`` (the rest is cut, with a marker)."""
    max_budget_usd: str | None = None
    """The task's budget, passed to Claude Code as ``--max-budget-usd``."""
    author_name: str = "Claude Worker"
    """Author and committer of the task's commit."""
    author_email: str = "worker@claude-orchestrator.invalid"
    """Their e-mail address."""
    keep_workdir: bool = False
    """Leave the attempt's clone and home behind (debugging on a host)."""
    provider: Provider = "anthropic"
    """Which API the agent's Claude Code speaks through the gateway (the manager's)."""
    aws_region: str = "us-east-1"
    """Bedrock's region, when ``provider`` is ``bedrock``."""
    pool: str | None = None
    """A warm pool worker's pool (``--pool-name`` wins)."""
    pool_profile: str | None = None
    """A warm pool worker's profile (``--profile`` wins)."""
    profile: str | None = None
    """The profile the worker was started with (named in a check's ``source``)."""
    profile_check: list[str] | None = None
    """The profile's check commands (None: the profile names none)."""

    @property
    def check_profile(self) -> tuple[str, list[str] | None] | None:
        """The profile's check as ``resolve_check`` takes it (its name and commands)."""
        if self.profile_check is None:
            return None
        return (self.profile or self.pool_profile or "default", self.profile_check)
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
    """The worker's settings, resolved once: explicit values, then the contract's environment
    variables, then defaults (the default root, this host's worker id)."""
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
        limits=Limits(max_total_bytes=int(env.get(ENV_MAX_CHANGE_BYTES) or DEFAULT_MAX_TOTAL_BYTES)),
        max_log_bytes=int(env.get(ENV_MAX_LOG_BYTES) or 64 * MiB),
        max_output_bytes=int(env.get(ENV_MAX_OUTPUT_BYTES) or 256 * KiB),
        max_budget_usd=env.get(ENV_MAX_BUDGET_USD) or None,
        author_name=env.get(ENV_GIT_USER_NAME) or "Claude Worker",
        author_email=env.get(ENV_GIT_USER_EMAIL) or "worker@claude-orchestrator.invalid",
        keep_workdir=bool(env.get(ENV_KEEP_WORKDIR)),
        provider=_provider(env),
        aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        pool=env.get(ENV_POOL) or None,
        pool_profile=env.get(ENV_POOL_PROFILE) or None,
        profile=env.get(ENV_PROFILE) or None,
        profile_check=_profile_check(env.get(ENV_PROFILE_CHECK)),
        gateway_dir=Path(env[ENV_GATEWAY_DIR]) if env.get(ENV_GATEWAY_DIR) else None,
        gateway_node=env.get(ENV_GATEWAY_NODE) or None,
    )


def _profile_check(value: str | None) -> list[str] | None:
    """``ORCHESTRATOR_PROFILE_CHECK``: a JSON list of commands; ValueError naming it otherwise."""
    if not value:
        return None
    try:
        commands = json.loads(value)
    except ValueError:
        commands = None
    if not isinstance(commands, list) or not all(isinstance(c, str) and c.strip() for c in commands):
        raise ValueError(
            f"{ENV_PROFILE_CHECK} is not a JSON list of commands; the manager writes it from the "
            "profile's 'check', so set that instead."
        )
    return commands


def _provider(env: Mapping[str, str]) -> Provider:
    if env.get("CLAUDE_CODE_USE_BEDROCK"):
        return "bedrock"
    if env.get("CLAUDE_CODE_USE_VERTEX"):
        return "vertex"
    return "anthropic"
