"""Starting the gateway: the one process that holds the model credentials and lets workers out.

With Docker it is the container ``orchestrator-gateway`` (``-<volume>`` for a volume other than
the default): the ``claude-worker`` image with ``--entrypoint orchestrator-gateway``, the
orchestration volume at ``/orchestration`` (its sockets live in ``gateway/`` there), the
credentials copied in as files, on the networks where its upstream and allowed hosts are. With
the local backend it is a process on this host. Either stays up between commands; a change of
upstream, credentials, networks or image replaces it. ``orchestrator cleanup --gateway`` stops it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration_protocol import Layout
from orchestration_protocol.gateway import api_socket, connect_unix, proxy_socket

from .backends.base import LABEL_ROLE, LABEL_ROOT, Backend
from .backends.docker import DockerBackend
from .backends.engine import secrets_archive
from .backends.local import RECORDS_DIR, process_start_ticks, start_detached
from .config import CONTAINER_ROOT, DEFAULT_VOLUME, ManagerSettings
from .errors import SpawnFailed
from .profiles import worker_image

GATEWAY_CONTAINER = "orchestrator-gateway"

ROLE_GATEWAY = "gateway"
LABEL_CONFIG = "orchestrator.config"
DEFAULT_UPSTREAM = "https://api.anthropic.com"
READY_TIMEOUT_S = 20.0
GATEWAY_CAPS = ["DAC_OVERRIDE", "FOWNER", "CHOWN"]
"""Root in its container without these could not write the volume's files made by others."""


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


def gateway_container_name(volume: str) -> str:
    """``orchestrator-gateway``, with a suffix for any volume but the default one."""
    if volume == DEFAULT_VOLUME:
        return GATEWAY_CONTAINER
    return f"{GATEWAY_CONTAINER}-{hashlib.sha256(volume.encode()).hexdigest()[:10]}"


def start_gateway(settings: ManagerSettings, backend: Backend, spec: GatewaySpec) -> None:
    """Make sure the gateway for this root runs as ``spec`` says, and answers."""
    if isinstance(backend, DockerBackend):
        _ensure_container(settings, backend, spec)
    else:
        _ensure_process(settings, spec)


def stop_gateway(settings: ManagerSettings, backend: Backend) -> bool:
    """Stop this root's gateway; True when one was running."""
    if isinstance(backend, DockerBackend):
        from docker.errors import NotFound

        try:
            container = backend.client.containers.get(gateway_container_name(backend.volume))
        except NotFound:
            return False
        container.stop(timeout=5)
        container.remove(force=True)
        return True
    return _stop_process(settings)


def wait_until_answering(layout: Layout, why_not: Any = None) -> None:
    """Until both gateway sockets accept a connection; SpawnFailed after READY_TIMEOUT_S."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            for path in (api_socket(layout), proxy_socket(layout)):
                connect_unix(path, timeout_s=2).close()
            return
        except OSError as error:
            if time.monotonic() > deadline or (why_not is not None and why_not()):
                detail = why_not() if why_not is not None else None
                raise SpawnFailed(
                    f"The gateway did not answer at {api_socket(layout)} ({error.strerror or error})"
                    f"{'; ' + detail if detail else ''}."
                ) from error
            time.sleep(0.1)


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


# --- Docker ----------------------------------------------------------------------------------


def _ensure_container(settings: ManagerSettings, backend: DockerBackend, spec: GatewaySpec) -> None:
    from docker.errors import APIError, NotFound

    client = backend.client
    backend.require_image(worker_image())
    name = gateway_container_name(backend.volume)
    fingerprint = spec.fingerprint(client.images.get(worker_image()).id)
    try:
        container = client.containers.get(name)
    except NotFound:
        container = None
    if container is not None:
        fresh = (container.labels or {}).get(LABEL_CONFIG) == fingerprint
        if fresh and container.status == "running":
            wait_until_answering(settings.layout, lambda: _exited(container))
            return
        container.remove(force=True)
    try:
        container = client.containers.create(
            worker_image(),
            entrypoint=["orchestrator-gateway"],
            command=["--root", str(CONTAINER_ROOT), "--upstream", spec.upstream],
            name=name,
            network=spec.networks[0] if spec.networks else None,
            labels={LABEL_ROLE: ROLE_GATEWAY, LABEL_ROOT: backend.root_label, LABEL_CONFIG: fingerprint},
            environment={**spec.env, "ORCHESTRATION_DIR": str(CONTAINER_ROOT)},
            volumes={backend.volume: {"bind": str(CONTAINER_ROOT), "mode": "rw"}},
            user="0:0",
            cap_drop=["ALL"],
            cap_add=GATEWAY_CAPS,
            security_opt=["no-new-privileges"],
            mem_limit="512m",
            pids_limit=256,
            restart_policy={"Name": "unless-stopped"},
        )
        if spec.credentials:
            container.put_archive("/run", secrets_archive(spec.credentials, "0:0"))
        for network in spec.networks[1:]:
            client.networks.get(network).connect(container)
        container.start()
    except APIError as error:
        raise SpawnFailed(
            f"The gateway container {name} did not start ({error.explanation}); see "
            f"'docker logs {name}'."
        ) from error
    wait_until_answering(settings.layout, lambda: _exited(container))


def _exited(container: Any) -> str | None:
    """Why the gateway container is not running, with its last log line; None while it runs."""
    with contextlib.suppress(Exception):
        container.reload()
        if container.status in ("exited", "dead"):
            last = bytes(container.logs(tail=3)).decode(errors="replace").strip().splitlines()
            return f"it exited: {last[-1] if last else 'no output'}; see 'docker logs {container.name}'"
    return None


def connect_gateway(backend: DockerBackend, network: str) -> None:
    """Let the gateway reach the hosts on ``network`` (a profile's allowed hosts live there)."""
    container = backend.client.containers.get(gateway_container_name(backend.volume))
    if network not in container.attrs["NetworkSettings"]["Networks"]:
        backend.client.networks.get(network).connect(container)


# --- local -----------------------------------------------------------------------------------


def _record_path(settings: ManagerSettings) -> Path:
    return settings.root / RECORDS_DIR / "gateway.json"


def _local_record(settings: ManagerSettings) -> dict[str, Any] | None:
    try:
        record = json.loads(_record_path(settings).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or process_start_ticks(record["pid"]) != record.get("start_ticks"):
        return None
    return record


def _ensure_process(settings: ManagerSettings, spec: GatewaySpec) -> None:
    fingerprint = spec.fingerprint()
    record = _local_record(settings)
    if record is not None and record.get("config") == fingerprint:
        wait_until_answering(settings.layout)
        return
    if record is not None:
        _stop_process(settings)
    records = settings.root / RECORDS_DIR
    records.mkdir(parents=True, exist_ok=True)
    secrets_dir = Path(tempfile.mkdtemp(prefix="orchestrator-gateway-secrets-"))
    for name, value in spec.credentials.items():
        (secrets_dir / name).write_text(value)
        (secrets_dir / name).chmod(0o400)
    env = {key: value for key, value in os.environ.items() if key not in spec.credentials}
    env.update(spec.env)
    env["ORCHESTRATOR_SECRETS_DIR"] = str(secrets_dir)
    command = [_gateway_command(), "--root", str(settings.root), "--upstream", spec.upstream]
    pid = start_detached(
        command, output=records / "gateway.out", env=env, secrets_dir=secrets_dir
    )
    _record_path(settings).write_text(
        json.dumps({"pid": pid, "start_ticks": process_start_ticks(pid), "config": fingerprint})
    )
    wait_until_answering(
        settings.layout,
        lambda: None if process_start_ticks(pid) else f"it exited; see {records / 'gateway.out'}",
    )


def _stop_process(settings: ManagerSettings) -> bool:
    record = _local_record(settings)
    if record is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record["pid"], signal.SIGTERM)
    _wait_gone(record["pid"])
    return True


def _gateway_command() -> str:
    beside = Path(sys.executable).parent / "orchestrator-gateway"
    return str(beside) if beside.exists() else (shutil.which("orchestrator-gateway") or str(beside))


def _wait_gone(pid: int, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while process_start_ticks(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)

