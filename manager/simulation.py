"""Simulation mode: the gateway forwards workers' model requests to the scripted model endpoint.

With Docker, the endpoint runs as the container ``orchestrator-scripted-model`` (the
``claude-worker`` image with ``--entrypoint scripted-model``) on the user-defined network
``orchestrator-net``, which the gateway joins; workers never reach it but through the gateway,
which injects the simulated key (the only one the scripted model accepts, so every test shows
the credential was added by the gateway). With the local backend it runs as a process on the
loopback interface. Either stays up between
commands, so ``spawn --simulate`` works too; ``orchestrator cleanup --simulation`` removes it
(only the root that started it does: other roots may share it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .backends.base import LABEL_ROLE, LABEL_ROOT, Backend
from .backends.docker import DockerBackend
from .backends.local import RECORDS_DIR, process_start_ticks, start_detached
from .config import ManagerSettings
from .errors import SpawnFailed
from .profiles import worker_image

SIMULATION_NETWORK = "orchestrator-net"
MODEL_CONTAINER = "orchestrator-scripted-model"
LABEL_IMAGE = "orchestrator.image-id"

MODEL_PORT = 8080
ROLE_MODEL = "scripted-model"
SIMULATED_API_KEY = "sk-ant-simulated-key-for-the-scripted-model-0000"
"""A placeholder key: Claude Code wants one; the scripted model ignores it."""
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


def start_simulation(settings: ManagerSettings, backend: Backend) -> Simulation:
    """Make sure the scripted model runs; return the settings for workers."""
    if isinstance(backend, DockerBackend):
        return _start_in_docker(settings, backend)
    return _start_locally(settings)


def model_container_name() -> str:
    """``orchestrator-scripted-model``; with the image's name after it when the generic worker
    image is not ``claude-worker`` (two image builds side by side each get their own model)."""
    image = worker_image()
    if image == "claude-worker":
        return MODEL_CONTAINER
    return f"{MODEL_CONTAINER}-{re.sub(r'[^A-Za-z0-9_.-]', '-', image)}"


def stop_simulation(settings: ManagerSettings, backend: Backend) -> bool:
    """Stop the scripted model if it runs; True when something was stopped."""
    if isinstance(backend, DockerBackend):
        from docker.errors import NotFound

        try:
            container = backend.client.containers.get(model_container_name())
        except NotFound:
            return False
        if (container.labels or {}).get(LABEL_ROOT) != backend.root_label:
            return False  # another root started it and may still be using it
        container.remove(force=True)
        return True
    record = _local_record(settings)
    if record is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record["pid"], signal.SIGTERM)
    return True


# --- Docker ----------------------------------------------------------------------------------


def _ensure_network(client: Any, name: str) -> None:
    from docker.errors import NotFound

    try:
        client.networks.get(name)
    except NotFound:
        client.networks.create(name, driver="bridge", labels={LABEL_ROLE: "network"})


def _start_in_docker(settings: ManagerSettings, backend: DockerBackend) -> Simulation:
    from docker.errors import APIError, NotFound

    client = backend.client
    network = settings.network or SIMULATION_NETWORK
    _ensure_network(client, network)
    backend.require_image(worker_image())
    image_id = client.images.get(worker_image()).id
    name = model_container_name()
    try:
        container = client.containers.get(name)
    except NotFound:
        container = None
    stale = container is not None and (container.labels or {}).get(LABEL_IMAGE) != image_id
    if container is not None and (stale or container.status != "running"):
        container.remove(force=True)
        container = None
    if container is not None and network not in container.attrs["NetworkSettings"]["Networks"]:
        client.networks.get(network).connect(container)  # shared: join it, never take it away
    if container is None:
        try:
            container = client.containers.run(
                worker_image(),
                entrypoint=["scripted-model"],
                command=[
                    "--host", "0.0.0.0", "--port", str(MODEL_PORT), "--quiet",
                    "--require-key", SIMULATED_API_KEY,
                ],
                name=name,
                network=network,
                labels={
                    LABEL_ROLE: ROLE_MODEL,
                    LABEL_ROOT: backend.root_label,
                    LABEL_IMAGE: image_id,
                },
                user="1000:1000",
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                mem_limit="512m",
                detach=True,
            )
        except APIError as error:
            raise SpawnFailed(
                f"The scripted model container {name} did not start "
                f"({error.explanation}); see 'docker logs {name}'."
            ) from error
    _wait_ready_in_container(container)
    return Simulation(
        upstream=f"http://{name}:{MODEL_PORT}",
        credentials={"ANTHROPIC_API_KEY": SIMULATED_API_KEY},
        network=network,
    )


def _wait_ready_in_container(container: Any) -> None:
    name = container.name
    probe = (
        "import urllib.request;"
        f"urllib.request.urlopen('http://127.0.0.1:{MODEL_PORT}/health', timeout=2)"
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        code, _ = container.exec_run(["python3", "-c", probe])
        if code == 0:
            return
        time.sleep(0.2)
    raise SpawnFailed(
        f"The scripted model in {name} did not answer within {READY_TIMEOUT_S:g}s; "
        f"see 'docker logs {name}'."
    )


def start_local_model(settings: ManagerSettings) -> Simulation:
    """The scripted model as a process on this host's loopback (``plan --local --simulate``)."""
    return _start_locally(settings)


# --- local -----------------------------------------------------------------------------------


def _local_record(settings: ManagerSettings) -> dict[str, Any] | None:
    path = settings.root / RECORDS_DIR / "scripted-model.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if process_start_ticks(record["pid"]) != record.get("start_ticks"):
        return None
    return record if isinstance(record, dict) else None


def _start_locally(settings: ManagerSettings) -> Simulation:
    record = _local_record(settings)
    if record is None:
        record = _spawn_local_model(settings)
    return Simulation(
        upstream=record["url"], credentials={"ANTHROPIC_API_KEY": SIMULATED_API_KEY}
    )


def _spawn_local_model(settings: ManagerSettings) -> dict[str, Any]:
    records = settings.root / RECORDS_DIR
    records.mkdir(parents=True, exist_ok=True)
    port_file = records / "scripted-model.port"
    port_file.unlink(missing_ok=True)
    server = [
        sys.executable, "-m", "scripted_model.server", "--host", "127.0.0.1",
        "--require-key", SIMULATED_API_KEY,
    ]
    pid = start_detached(
        [*server, "--port", "0", "--port-file", str(port_file), "--quiet"],
        output=records / "scripted-model.out",
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not port_file.exists():
        if process_start_ticks(pid) is None or time.monotonic() > deadline:
            raise SpawnFailed(
                f"The scripted model did not start; see {records / 'scripted-model.out'}."
            )
        time.sleep(0.05)
    record = {
        "pid": pid,
        "start_ticks": process_start_ticks(pid),
        "url": f"http://127.0.0.1:{int(port_file.read_text())}",
    }
    (records / "scripted-model.json").write_text(json.dumps(record))
    return record
