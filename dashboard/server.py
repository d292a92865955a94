"""Serving the dashboard: settings resolved in one place, then uvicorn until SIGTERM or Ctrl-C.

On loopback (the default, 127.0.0.1) no token is needed and only loopback ``Host`` names are
accepted. Bound to any other address it always needs a token: the one given (a file, or
``$ORCHESTRATOR_DASHBOARD_TOKEN``), else a random one made at start and printed with the URL to
open (as Jupyter does), so a board on a network is never open to it.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestration_protocol import Layout

from .project import project_info

TOKEN_ENV = "ORCHESTRATOR_DASHBOARD_TOKEN"
PUBLIC_URL_ENV = "ORCHESTRATOR_DASHBOARD_URL"
"""Where people open the dashboard when that is not where it listens (a published container
port): the URL it prints at start."""
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8450


class DashboardSettingError(ValueError):
    """A setting the dashboard cannot start with, as one sentence with the fix."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DashboardSettings:
    """How the dashboard is served."""

    root: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    """Needed on every request; None only on loopback."""
    token_generated: bool = False
    """The token was made at start (so it is printed)."""
    public_url: str | None = None
    """Where people open it (``$ORCHESTRATOR_DASHBOARD_URL``); None: where it listens."""

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::") else socket.gethostname()
        host = f"[{host}]" if ":" in host else host
        base = (self.public_url.rstrip("/") + "/") if self.public_url else f"http://{host}:{self.port}/"
        return base + (f"?token={self.token}" if self.token and self.token_generated else "")


def resolve_dashboard_settings(
    root: Path, host: str, port: int, token_file: Path | None = None
) -> DashboardSettings:
    """The token from ``token_file``, else ``$ORCHESTRATOR_DASHBOARD_TOKEN``; a new one when
    bound beyond loopback without either."""
    if not 0 < port < 65536:
        raise DashboardSettingError(f"--port {port} is not a TCP port; give one from 1 to 65535.")
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as error:
            raise DashboardSettingError(
                f"Cannot read the token file {token_file} ({error.strerror}); give a readable file."
            ) from None
        if len(token) < 16:
            raise DashboardSettingError(
                f"The token in {token_file} is shorter than 16 characters; use a longer one "
                "(e.g. openssl rand -hex 16)."
            )
    token = token or os.environ.get(TOKEN_ENV, "").strip() or None
    if token is not None and len(token) < 16:
        raise DashboardSettingError(
            f"${TOKEN_ENV} is shorter than 16 characters; use a longer one (openssl rand -hex 16)."
        )
    generated = False
    if token is None and not is_loopback(host):
        token, generated = secrets.token_urlsafe(24), True
    public_url = os.environ.get(PUBLIC_URL_ENV, "").strip() or None
    return DashboardSettings(root.absolute(), host, port, token, generated, public_url)


def serve(settings: DashboardSettings, *, quiet: bool = False) -> None:
    """Serve until stopped (SIGTERM and SIGINT end it cleanly)."""
    import uvicorn

    from .app import create_app

    allowed = None
    if settings.token is None:
        allowed = sorted({"127.0.0.1", "localhost", "[::1]", settings.host})
    app = create_app(Layout(settings.root), token=settings.token, allowed_hosts=allowed)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http="httptools",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    if not quiet:
        served = project_info().project
        served = f" (project {served})" if served else ""
        print(f"dashboard: {settings.root}{served} at {settings.url}", file=sys.stderr, flush=True)
    server.run()


def port_problem(host: str, port: int) -> str | None:
    """Why the dashboard cannot listen on ``host:port``, in one sentence; None when it can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            return (
                f"Cannot listen on {host}:{port} ({error.strerror}); give another --port or "
                "--host."
            )
    return None
