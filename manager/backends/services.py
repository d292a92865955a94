"""What a backend runs beside its workers, said without naming an engine: the scripted model
(simulation), the gateway (the one process that holds the model credentials and lets workers
out), and the doctor's checks. Each engine starts them its own way (``docker/services.py``,
``local/services.py``); both stay up between commands, and a change that matters replaces them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec
from urllib.parse import urlsplit

from orchestration_protocol import Layout
from orchestration_protocol.gateway import api_socket, connect_unix, proxy_socket

from ..errors import ManagerError, SpawnFailed
from ..polling import poll_until

ROLE_MODEL = "scripted-model"
ROLE_GATEWAY = "gateway"
LABEL_CONFIG = "orchestrator.config"
"""Label holding the fingerprint of what a service container was started with."""
DEFAULT_UPSTREAM = "https://api.anthropic.com"
MODEL_PORT = 8080
SIMULATED_API_KEY = "sk-ant-simulated-key-for-the-scripted-model-0000"
"""The key the gateway injects in simulation; the scripted model accepts only this one, so every
simulated run shows the credential was added by the gateway."""
READY_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Simulation:
    """What the gateway needs to use the scripted model."""

    upstream: str
    """The scripted model's URL as the gateway reaches it."""
    credentials: dict[str, str] = field(repr=False)
    """The key the gateway injects."""
    network: str | None = None
    """The Docker network the gateway must join to reach it."""


@dataclass(frozen=True)
class GatewaySpec:
    """What the gateway should be: where it forwards to, with which credentials, on which networks."""

    upstream: str
    """The model endpoint (Anthropic's API, or the scripted model in simulation)."""
    credentials: dict[str, str] = field(repr=False)
    """Secret name -> value (ANTHROPIC_API_KEY, CLAUDE_CODE_OAUTH_TOKEN, ...), as files only."""
    networks: tuple[str, ...] = ()
    """Docker networks to join (the first at start); none: the engine's default bridge."""
    env: dict[str, str] = field(default_factory=dict)
    """Non-secret settings (the AWS region, upstream overrides)."""

    def fingerprint(self, image_id: str = "") -> str:
        """Changes whenever a running gateway would have to be replaced."""
        digest = hashlib.sha256()
        settings = [f"{name}={value}" for name, value in sorted(self.env.items())]
        for part in (self.upstream, image_id, *self.networks, *settings):
            digest.update(part.encode() + b"\0")
        for name in sorted(self.credentials):
            digest.update(f"{name}={self.credentials[name]}\0".encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Check:
    """One doctor check: what was checked, whether it passed, and the sentence to show."""

    name: str
    ok: bool
    message: str


def wait_until_answering(
    layout: Layout, why_not: Callable[[], str | None] | None = None
) -> None:
    """Until both gateway sockets accept a connection; SpawnFailed after READY_TIMEOUT_S, or at
    once when ``why_not()`` says why the gateway cannot start."""
    problem: list[OSError] = []

    def answering() -> bool:
        try:
            for path in (api_socket(layout), proxy_socket(layout)):
                connect_unix(path, timeout_s=2).close()
            return True
        except OSError as error:
            problem[:] = [error]
            if why_not is not None and (reason := why_not()):
                raise SpawnFailed(f"The gateway did not start: {reason}.") from error
            return False

    if poll_until(answering, timeout_s=READY_TIMEOUT_S):
        return
    error = problem[-1]
    raise SpawnFailed(
        f"The gateway did not answer at {api_socket(layout)} ({error.strerror or error})."
    ) from error


def upstream_probe(upstream: str) -> str:
    """Python that exits non-zero unless an upstream inside the stack (plain ``http://``: the
    scripted model, a proxy of the site) resolves and takes a connection; a public upstream
    (``https://``) is not probed, so an outage out there never restarts a gateway."""
    parts = urlsplit(upstream)
    if parts.scheme != "http" or not parts.hostname:
        return ""
    return (
        "import socket\n"
        f"socket.create_connection(('{parts.hostname}',{parts.port or 80}),timeout=3).close()\n"
    )


def health_probe(upstream: str, api_sock: str) -> list[str]:
    """The gateway's health check: its ``/health`` answers on its own socket ``api_sock``, and
    :func:`upstream_probe` passes, so a gateway that lost its network (the names on it after a
    ``docker swarm leave``, a vanished overlay) is not healthy."""
    script = (
        "import socket\n"
        "s=socket.socket(socket.AF_UNIX);s.settimeout(3)\n"
        f"s.connect('{api_sock}')\n"
        "s.sendall(b'GET /health HTTP/1.0\\r\\nhost: gateway\\r\\n\\r\\n')\n"
        "assert b' 200 ' in s.recv(64)\n"
    )
    return ["CMD", "python3", "-c", script + upstream_probe(upstream)]


P = ParamSpec("P")


def run_check(name: str, check: Callable[P, str], *args: P.args, **kwargs: P.kwargs) -> Check:
    """``check(...)``'s sentence as a passed Check, or its error's sentence as a failed one."""
    try:
        return Check(name, True, check(*args, **kwargs))
    except ManagerError as error:
        return Check(name, False, str(error))


def require_external_gateway(layout: Layout) -> None:
    """With ``$ORCHESTRATOR_GATEWAY=external`` (the Compose stack): the gateway someone else runs
    must answer on its sockets in the volume; it is never started from here."""
    try:
        wait_until_answering(layout)
    except SpawnFailed as error:
        raise SpawnFailed(
            f"{str(error).rstrip('.')}; the gateway is run by someone else "
            "($ORCHESTRATOR_GATEWAY=external): start it (docker-compose up -d gateway), or unset "
            "the variable to have it started here."
        ) from error
