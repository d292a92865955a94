"""The gateway's part of the protocol: who may call it, and what it records.

A worker's agent holds no credential. When the worker runtime has claimed an attempt it mints a
random **caller token**, writes ``gateway/callers/<sha256(token)>.json`` (a :class:`GatewayCaller`:
which task and attempt the token speaks for, and the profile's egress allowlist) and hands the
token to its agent. The gateway serves a request only while :func:`caller_refusal` finds that
attempt still holds a live claim: a later attempt, an expired lease, a cancel request or a
written result ends the token's use. Only the hash is on the volume, so nothing that reads the
volume learns a usable token.

The gateway writes what it did: ``ledger/<id>.jsonl`` (one :class:`LedgerEntry` per model
request, with its usage and cost) and ``egress/<id>.jsonl`` (one :class:`EgressEntry` per
outbound connection, allowed or refused). A fleet budget, when set, is ``gateway/budget.json``.

Sockets: the gateway listens on ``gateway/api.sock`` (Claude Code's model requests) and
``gateway/proxy.sock`` (the egress proxy, HTTP CONNECT and absolute-form requests). Unix socket
paths are limited to 108 bytes; :func:`short_socket_path` makes any path usable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import Field, ValidationError

from .files import atomic_write_bytes, read_model_if_exists
from .models import ProtocolModel, SchemaVersion, TaskId, utc_now
from .paths import Layout, validate_task_id
from .state import TaskState, read_task_state

GATEWAY_DIR = "gateway"
LEDGER_DIR = "ledger"
EGRESS_DIR = "egress"
API_SOCKET = "api.sock"
PROXY_SOCKET = "proxy.sock"
TOKEN_PREFIX = "orc-"
DOMAIN_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")


class GatewayCaller(ProtocolModel):
    """``gateway/callers/<sha256 of token>.json``: what one caller token speaks for."""

    task_id: TaskId
    """The task whose attempt minted the token."""
    attempt: int = Field(ge=1)
    """The attempt; the token works only while this attempt holds a live claim."""
    worker_id: str = Field(min_length=1, max_length=200)
    """The worker that minted it (as in its claim)."""
    issued_at: datetime
    """When the token was minted."""
    egress_allow: list[str] = Field(default_factory=list)
    """Host names the egress proxy lets this caller reach: ``host`` exactly or ``*.domain``
    (every subdomain); empty denies every outbound connection."""
    api_allow: dict[str, list[str]] = Field(default_factory=dict)
    """What the model API forwards for this caller beyond the gateway's allowlists (from the
    task's profile): ``body_keys``, ``betas``, ``headers``, ``server_tools``."""
    node: str | None = Field(default=None, max_length=200)
    """The node whose gateway alone may serve the token (``$ORCHESTRATOR_GATEWAY_NODE`` of the
    worker); None on one host. A gateway of another node refuses it."""
    schema_version: SchemaVersion = 1
    """Protocol version of this file."""


class LedgerEntry(ProtocolModel):
    """One line of ``ledger/<id>.jsonl``: one model request the gateway handled."""

    at: datetime
    """When the request ended."""
    task_id: TaskId
    """The task whose agent made the request."""
    attempt: int = Field(ge=1)
    """The attempt that made it."""
    model: str | None = None
    """The model named in the request."""
    path: str = "/v1/messages"
    """Which endpoint was called."""
    outcome: str
    """``ok``; ``refused`` (by the gateway: budget, lease, allowlist); ``upstream_error``;
    ``caller_gone`` (charged as if every output token allowed was made); ``gateway_gone`` (the
    gateway stopped mid-request: charged its hold); ``over_budget`` (a marker, cost 0: the
    request before it took the task past its budget)."""
    status_code: int
    """The HTTP status the caller got."""
    input_tokens: int = Field(default=0, ge=0)
    """Input tokens billed (excluding cache reads and writes)."""
    output_tokens: int = Field(default=0, ge=0)
    """Output tokens billed."""
    cache_read_input_tokens: int = Field(default=0, ge=0)
    """Input tokens read from the prompt cache."""
    cache_creation_input_tokens: int = Field(default=0, ge=0)
    """Input tokens written to the prompt cache."""
    cost_usd: float = Field(default=0.0, ge=0)
    """What the request cost, from the price table."""
    error: str | None = None
    """Why it was refused or failed, in one sentence."""
    retries: int = Field(default=0, ge=0)
    """How often the gateway retried it upstream (429/529)."""
    node: str | None = Field(default=None, max_length=200)
    """The node whose gateway served it (``$ORCHESTRATOR_GATEWAY_NODE``); None on one host."""
    schema_version: SchemaVersion = 1
    """Protocol version of this line."""


class EgressEntry(ProtocolModel):
    """One line of ``egress/<id>.jsonl``: one outbound connection through the egress proxy."""

    at: datetime
    """When the connection was asked for."""
    task_id: TaskId
    """The task whose agent asked."""
    attempt: int = Field(ge=1)
    """The attempt that asked."""
    method: str
    """``CONNECT``, or the method of a plain-HTTP request."""
    host: str = Field(max_length=300)
    """The host asked for."""
    port: int = Field(ge=0, le=65535)
    """The port asked for."""
    allowed: bool
    """Whether the proxy let it through."""
    reason: str | None = None
    """Why it was refused (or why it failed after being allowed)."""
    schema_version: SchemaVersion = 1
    """Protocol version of this line."""


class FleetBudget(ProtocolModel):
    """``gateway/budget.json``: spending allowed to all tasks together, counted from ``since``."""

    usd: float = Field(gt=0)
    """The most all tasks together may spend."""
    since: datetime
    """Ledger entries before this moment do not count."""
    schema_version: SchemaVersion = 1
    """Protocol version of this file."""


def gateway_dir(layout: Layout) -> Path:
    """``gateway/``: the sockets, the callers and the fleet budget."""
    return layout.root / GATEWAY_DIR


def callers_dir(layout: Layout) -> Path:
    return gateway_dir(layout) / "callers"


def api_socket(layout: Layout, socket_dir: Path | None = None) -> Path:
    """The model socket: in ``socket_dir`` (``$ORCHESTRATOR_GATEWAY_DIR``) when given, else in
    the root's ``gateway/``."""
    return (socket_dir or gateway_dir(layout)) / API_SOCKET


def proxy_socket(layout: Layout, socket_dir: Path | None = None) -> Path:
    """The egress proxy's socket, beside :func:`api_socket`."""
    return (socket_dir or gateway_dir(layout)) / PROXY_SOCKET


def budget_file(layout: Layout) -> Path:
    return gateway_dir(layout) / "budget.json"


def ledger_file(layout: Layout, task_id: str) -> Path:
    return layout.root / LEDGER_DIR / f"{validate_task_id(task_id)}.jsonl"


def egress_file(layout: Layout, task_id: str) -> Path:
    return layout.root / EGRESS_DIR / f"{validate_task_id(task_id)}.jsonl"


def token_digest(token: str) -> str:
    """The name a caller token is filed under: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def caller_file(layout: Layout, token: str) -> Path:
    return callers_dir(layout) / f"{token_digest(token)}.json"


def mint_caller_token(layout: Layout, caller: GatewayCaller) -> str:
    """A new random token for ``caller``, filed by its hash; the token itself is returned only."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    path = caller_file(layout, token)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, caller.to_json_bytes())
    return token


def revoke_caller_token(layout: Layout, token: str) -> None:
    """Forget a token (the lease check would refuse it anyway once the attempt ends)."""
    with contextlib.suppress(FileNotFoundError):
        caller_file(layout, token).unlink()


def find_caller(layout: Layout, token: str) -> GatewayCaller | None:
    """The caller a token speaks for, or None when it is unknown (or its file is unusable)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    try:
        return read_model_if_exists(caller_file(layout, token), GatewayCaller)
    except Exception:  # an unreadable caller file is an unknown caller
        return None


def caller_refusal(
    layout: Layout, caller: GatewayCaller, now: datetime | None = None, node: str | None = None
) -> str | None:
    """None while the caller's attempt holds a live claim (and, when ``node`` names the
    gateway's node, its token was issued there); else why it is refused, one sentence."""
    now = now or utc_now()
    who = f"task {caller.task_id} attempt {caller.attempt}"
    if node is not None and caller.node != node:
        return f"{who} has a token for node {caller.node or '(none)'}, not this gateway's node {node}"
    snapshot, state = read_task_state(layout, caller.task_id, now=now)
    if snapshot.claim is None:
        return f"{who} holds no claim"
    if snapshot.claim.attempt != caller.attempt:
        return f"{who} was replaced by attempt {snapshot.claim.attempt}"
    if snapshot.cancel is not None:
        return f"{who} was cancelled"
    if state != TaskState.RUNNING:
        if snapshot.current_result is not None:
            return f"{who} has ended ({snapshot.current_result.status.value})"
        return f"{who} let its lease expire"
    return None


def task_budget_refusal(spent_usd: float, budget_usd: float | None, task_id: str) -> str | None:
    """Why the next request of a task is refused for its budget, or None."""
    if budget_usd is not None and spent_usd >= budget_usd:
        return f"task {task_id} has spent ${spent_usd:.4f} of its ${budget_usd:.4f} budget"
    return None


def domain_allowed(host: str, allow: list[str]) -> bool:
    """Whether ``host`` is on the allowlist (``name`` exactly, or ``*.domain`` for subdomains)."""
    host = host.lower().rstrip(".")
    for pattern in allow:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
        if host == pattern:
            return True
    return False


def append_line(path: Path, entry: ProtocolModel) -> None:
    """Append one JSON line (one ``write`` of O_APPEND, so lines from several writers never mix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = entry.model_dump_json(exclude_none=True).encode() + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_lines(path: Path, model: type[LedgerEntry] | type[EgressEntry]) -> Iterator[LedgerEntry | EgressEntry]:
    """The valid lines of a ledger or egress log (a torn or foreign line is skipped)."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return
    for line in lines:
        with contextlib.suppress(ValidationError, ValueError, json.JSONDecodeError):
            yield model.model_validate_json(line)


def read_ledger(layout: Layout, task_id: str) -> list[LedgerEntry]:
    return [e for e in read_lines(ledger_file(layout, task_id), LedgerEntry) if isinstance(e, LedgerEntry)]


def read_egress(layout: Layout, task_id: str) -> list[EgressEntry]:
    return [e for e in read_lines(egress_file(layout, task_id), EgressEntry) if isinstance(e, EgressEntry)]


def ledger_cost(layout: Layout, task_id: str, attempt: int | None = None) -> float:
    """What a task (one attempt, or all) cost by the gateway's ledger."""
    return sum(e.cost_usd for e in read_ledger(layout, task_id) if attempt in (None, e.attempt))


def budget_error(layout: Layout, task_id: str, attempt: int) -> str | None:
    """The gateway's budget refusal of this attempt, if it refused one (for the result)."""
    for entry in read_ledger(layout, task_id):
        if (entry.attempt == attempt and entry.outcome in ("refused", "over_budget")
                and entry.error and "budget" in entry.error):
            return entry.error
    return None


def read_fleet_budget(layout: Layout) -> FleetBudget | None:
    try:
        return read_model_if_exists(budget_file(layout), FleetBudget)
    except Exception:
        return None


def write_fleet_budget(layout: Layout, usd: float) -> FleetBudget:
    """Set the fleet budget, counting from now."""
    budget = FleetBudget(usd=usd, since=utc_now())
    path = budget_file(layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, budget.to_json_bytes())
    return budget


def short_socket_path(path: Path) -> tuple[str, int]:
    """A path under 108 bytes naming the same socket: ``/proc/self/fd/<dirfd>/<name>``.

    Returns it with the directory's file descriptor, which the caller closes when done."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def connect_unix(path: Path, timeout_s: float | None = 10) -> socket.socket:
    """A connected Unix stream socket to ``path``, however long the path is."""
    short, fd = short_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(short)
    except OSError:
        sock.close()
        raise
    finally:
        os.close(fd)
    return sock


def bind_unix(path: Path) -> socket.socket:
    """A listening Unix stream socket at ``path`` (an old socket file there is replaced), 0666
    so that workers of any uid can connect: the token, not the file mode, is the access check."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    short, fd = short_socket_path(path)
    try:
        sock.bind(short)
        os.chmod(short, 0o666)
    finally:
        os.close(fd)
    sock.listen(256)
    return sock

