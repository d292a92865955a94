"""Whether a dispatcher serving as a long-running service is healthy: it passed through its loop
lately (it touches ``alive_file`` on every pass, at least every few seconds when idle), and the
gateway it sends workers to answers on its sockets. A Compose or Docker healthcheck runs
``orchestrator healthcheck``; a hung loop or a dead gateway makes it fail with one sentence."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from orchestration_protocol.gateway import api_socket, connect_unix, proxy_socket

from ..config import ALIVE_FILE_ENV, ManagerSettings
from ..errors import EnvironmentNotReady


class Unhealthy(EnvironmentNotReady):
    """A check of ``orchestrator healthcheck`` failed."""


def touch_alive(path: Path | None) -> None:
    """Mark a pass of the dispatcher's loop (nothing when no file is configured)."""
    if path is None:
        return
    with contextlib.suppress(OSError):  # a healthcheck file must never stop the dispatcher
        path.touch()
        os.utime(path)


def check_health(
    settings: ManagerSettings,
    alive_file: Path | None,
    *,
    max_age_s: float,
    gateway: bool,
) -> list[str]:
    """What was checked, one phrase each; Unhealthy (one sentence) at the first failure."""
    checks = []
    alive = alive_file or settings.alive_file
    if alive is not None:
        try:
            age = time.time() - alive.stat().st_mtime
        except FileNotFoundError:
            raise Unhealthy(
                f"The dispatcher has not passed through its loop yet (no {alive}); see its log."
            ) from None
        if age > max_age_s:
            raise Unhealthy(
                f"The dispatcher's last pass was {age:.0f}s ago (more than {max_age_s:g}s): it "
                "hangs or stopped; see its log and restart it."
            )
        checks.append(f"dispatcher passed {age:.1f}s ago")
    elif not gateway:
        raise Unhealthy(
            f"Nothing to check: give --alive-file (or ${ALIVE_FILE_ENV}) or --gateway."
        )
    if gateway:
        for path in (api_socket(settings.layout), proxy_socket(settings.layout)):
            try:
                connect_unix(path, timeout_s=3).close()
            except OSError as error:
                raise Unhealthy(
                    f"The gateway does not answer at {path} ({error.strerror or error}); see "
                    "the gateway's log."
                ) from None
        checks.append("gateway answers")
    return checks
