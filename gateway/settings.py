"""The gateway's settings, resolved in one place: explicit argument, then environment, then
default (as watchfiles does). ``resolve_settings`` is the only function that reads the
environment for settings; :func:`environment` is the one place the environment is read at all
(credentials, by :mod:`gateway.credentials`, get it from there)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestration_protocol.contract import (
    DEFAULT_SECRETS_DIR,
    ENV_GATEWAY_DIR,
    ENV_GATEWAY_NODE,
    ENV_ROOT,
    ENV_SECRETS_DIR,
)
from orchestration_protocol.docstrings import describe_fields

from .errors import BadSetting

DEFAULT_UPSTREAM = "https://api.anthropic.com"
MIB = 1024 * 1024

ENV_NAMES: dict[str, str] = {
    "root": ENV_ROOT,
    "upstream": "ANTHROPIC_BASE_URL",
    "bedrock_upstream": "GATEWAY_BEDROCK_UPSTREAM",
    "vertex_upstream": "GATEWAY_VERTEX_UPSTREAM",
    "secrets_dir": ENV_SECRETS_DIR,
    "max_body_bytes": "GATEWAY_MAX_BODY_BYTES",
    "max_retries": "GATEWAY_MAX_RETRIES",
    "retry_total_s": "GATEWAY_RETRY_TOTAL_S",
    "concurrency": "GATEWAY_CONCURRENCY",
    "connect_timeout_s": "GATEWAY_CONNECT_TIMEOUT_S",
    "read_timeout_s": "GATEWAY_READ_TIMEOUT_S",
    "retry_base_s": "GATEWAY_RETRY_BASE_S",
    "head_timeout_s": "GATEWAY_HEAD_TIMEOUT_S",
    "idle_timeout_s": "GATEWAY_IDLE_TIMEOUT_S",
    "idle_stop_s": "GATEWAY_IDLE_STOP_S",
    "max_head_bytes": "GATEWAY_MAX_HEAD_BYTES",
    "log_bodies": "GATEWAY_LOG_BODIES",
    "egress_loopback": "GATEWAY_EGRESS_LOOPBACK",
    "task_concurrency": "GATEWAY_TASK_CONCURRENCY",
    "caller_concurrency": "GATEWAY_CALLER_CONCURRENCY",
    "queue_timeout_s": "GATEWAY_QUEUE_TIMEOUT_S",
    "bytes_per_token": "GATEWAY_BYTES_PER_TOKEN",
    "min_output_tokens": "GATEWAY_MIN_OUTPUT_TOKENS",
    "allow_body_keys": "GATEWAY_ALLOW_BODY_KEYS",
    "allow_betas": "GATEWAY_ALLOW_BETAS",
    "allow_headers": "GATEWAY_ALLOW_HEADERS",
    "allow_server_tools": "GATEWAY_ALLOW_SERVER_TOOLS",
    "socket_dir": ENV_GATEWAY_DIR,
    "node": ENV_GATEWAY_NODE,
}
"""The environment variable each setting falls back to."""


class GatewaySettings(BaseModel):
    """Everything the gateway process needs besides its credential."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True, frozen=True)

    root: Path
    """The orchestration root (the shared volume): sockets, callers, ledger, egress log."""
    upstream: str = DEFAULT_UPSTREAM
    """Base URL of the model API the gateway forwards to."""
    bedrock_upstream: str | None = None
    """Base URL Bedrock requests go to; default ``https://bedrock-runtime.<region>.amazonaws.com``
    (and ``https://bedrock.<region>.amazonaws.com`` for ``/inference-profiles``)."""
    vertex_upstream: str | None = None
    """Base URL Vertex requests go to; default ``https://<region>-aiplatform.googleapis.com``,
    the region taken from the request's path."""
    secrets_dir: Path = DEFAULT_SECRETS_DIR
    """Directory of credential files, one file per name (else the environment)."""
    max_body_bytes: int = Field(default=32 * MIB, gt=0)
    """Largest request body accepted from a caller (413 beyond)."""
    max_retries: int = Field(default=4, ge=0, le=50)
    """How often a request answered 429/529 upstream is retried."""
    retry_total_s: float = Field(default=60.0, ge=0)
    """The most time spent waiting between retries of one request."""
    retry_base_s: float = Field(default=0.5, gt=0)
    """First backoff wait when upstream gives no ``retry-after``; doubles each retry."""
    concurrency: int = Field(default=8, ge=1, le=1000)
    """Most upstream requests in flight at once (per credential)."""
    task_concurrency: int = Field(default=4, ge=1, le=1000)
    """Most upstream requests one task may have in flight at once (the rest wait their turn)."""
    caller_concurrency: int = Field(default=4, ge=1, le=1000)
    """Most upstream requests one caller token (attempt) may have in flight at once."""
    queue_timeout_s: float = Field(default=120.0, gt=0)
    """Longest wait for an upstream slot; then the request is answered 529 ``overloaded_error``."""
    bytes_per_token: float = Field(default=3.0, gt=0)
    """Body bytes counted as one input token when a request's worst case is held (3: fewer
    bytes per token than any text Claude Code sends, so the hold is not short)."""
    min_output_tokens: int = Field(default=1024, ge=1)
    """A request whose ``max_tokens`` does not fit the budget left is sent with ``max_tokens``
    lowered to what fits, if at least this many; else it is refused."""
    allow_body_keys: list[str] = Field(default_factory=list)
    """Request body keys forwarded besides :data:`gateway.policy.BODY_KEYS` (comma-separated)."""
    allow_betas: list[str] = Field(default_factory=list)
    """``anthropic-beta`` values forwarded besides :data:`gateway.policy.BETAS`."""
    allow_headers: list[str] = Field(default_factory=list)
    """Request headers forwarded besides :data:`gateway.policy.HEADERS`."""
    allow_server_tools: list[str] = Field(default_factory=list)
    """Server tool types forwarded (e.g. ``web_search_20250305``); none by default."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    """Timeout to connect to the upstream (and, for egress, to a target)."""
    read_timeout_s: float = Field(default=600.0, gt=0)
    """Longest silence from the upstream while a reply is read."""
    head_timeout_s: float = Field(default=10.0, gt=0)
    """Egress proxy: time a client has to send its request head."""
    idle_timeout_s: float = Field(default=600.0, gt=0)
    """Egress proxy: a tunnel silent both ways this long is closed."""
    idle_stop_s: float = Field(default=300.0, ge=0)
    """Stop after this long with no caller token and no fresh worker heartbeat (0: never)."""
    max_head_bytes: int = Field(default=16 * 1024, ge=1024)
    """Egress proxy: largest request head (request line and headers)."""
    log_bodies: bool = False
    """Log prompt bodies on stderr (off: never a prompt in the log)."""
    egress_loopback: bool = False
    """Egress proxy: let an allowed name that resolves to a loopback address through (a registry
    mirror on the gateway's own host); off, such a name is refused like a link-local one."""
    socket_dir: Path | None = None
    """Where to listen (``api.sock``, ``proxy.sock``); None: ``gateway/`` in the root. On a
    multi-node engine a node-local directory only this node's workers mount."""
    node: str | None = None
    """The node this gateway serves, written into each ledger line (None on one host)."""

    @field_validator("upstream", "bedrock_upstream", "vertex_upstream")
    @classmethod
    def _upstream_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream {value!r} is not an http(s) URL")
        return value.rstrip("/")


def environment() -> Mapping[str, str]:
    """The process environment (the only read of it in the gateway)."""
    return os.environ


def _from_env(name: str, env: Mapping[str, str]) -> Any:
    value = env.get(ENV_NAMES[name], "")
    if name in ("log_bodies", "egress_loopback") and value:
        return value.strip().lower() in ("1", "true", "yes", "on")
    if name.startswith("allow_"):
        return [v.strip() for v in value.split(",") if v.strip()] or None
    return value or None


def resolve_settings(env: Mapping[str, str] | None = None, **explicit: Any) -> GatewaySettings:
    """Settings from ``explicit`` (None means not given), then ``env``, then defaults; a bad
    value raises :class:`BadSetting` naming the setting."""
    env = environment() if env is None else env
    values: dict[str, Any] = {}
    for name in GatewaySettings.model_fields:
        value = explicit.get(name)
        if value is None and name in ENV_NAMES:
            value = _from_env(name, env)
        if value is not None:
            values[name] = value
    if "root" not in values:
        raise BadSetting("no orchestration root: pass --root or set ORCHESTRATION_DIR")
    try:
        return GatewaySettings(**values)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        env_name = ENV_NAMES.get(where)
        hint = f" (--{where.replace('_', '-')} or {env_name})" if env_name else ""
        raise BadSetting(f"bad setting {where}{hint}: {first['msg']}") from error
