"""The Docker backend's services: the scripted model and the gateway as containers, and the
doctor's engine, image and volume checks.

The scripted model is the container ``orchestrator-scripted-model`` (the generic worker image
with ``--entrypoint scripted-model``; named after the image when it is not ``claude-worker``,
replaced when the image changes) on the user-defined network ``orchestrator-net``, which the
gateway joins; workers never reach it but through the gateway. Only the root that started it
removes it (``orchestrator cleanup --simulation``): other roots may share it.

The gateway is the container ``orchestrator-gateway`` (``-<hash>`` for a volume other than the
default): the generic worker image with ``--entrypoint orchestrator-gateway``, the volume at
``/orchestration`` (its sockets live in ``gateway/`` there), the credentials copied in as files,
on the networks where its upstream and allowed hosts are; a change of upstream, credentials,
networks or image replaces it. ``orchestrator cleanup --gateway`` stops it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from typing import Any, Protocol

from ..config import CONTAINER_ROOT, DEFAULT_VOLUME, ManagerSettings
from ..errors import EnvironmentNotReady, SpawnFailed, VolumeNotWritable
from ..polling import poll_until
from ..profiles import WORKER_UID, worker_image
from .base import LABEL_ROLE, LABEL_ROOT
from .engine import secrets_archive
from .services import (
    LABEL_CONFIG,
    MODEL_PORT,
    READY_TIMEOUT_S,
    ROLE_GATEWAY,
    ROLE_MODEL,
    SIMULATED_API_KEY,
    GatewaySpec,
    Simulation,
    wait_until_answering,
)


class DockerHost(Protocol):
    """What the services need of the Docker backend (which is one)."""

    settings: ManagerSettings

    @property
    def client(self) -> Any: ...
    @property
    def volume(self) -> str: ...
    @property
    def root_label(self) -> str: ...
    def require_image(self, image: str) -> None: ...

SIMULATION_NETWORK = "orchestrator-net"
MODEL_CONTAINER = "orchestrator-scripted-model"
GATEWAY_CONTAINER = "orchestrator-gateway"
LABEL_IMAGE = "orchestrator.image-id"
GATEWAY_CAPS = ["DAC_OVERRIDE", "FOWNER", "CHOWN"]
"""Root in its container without these could not write the volume's files made by others."""


# --- the scripted model ---------------------------------------------------------------------


def model_container_name() -> str:
    """``orchestrator-scripted-model``; with the image's name after it when the generic worker
    image is not ``claude-worker`` (two image builds side by side each get their own model)."""
    image = worker_image()
    if image == "claude-worker":
        return MODEL_CONTAINER
    return f"{MODEL_CONTAINER}-{re.sub(r'[^A-Za-z0-9_.-]', '-', image)}"


def ensure_network(client: Any, name: str) -> None:
    from docker.errors import NotFound

    try:
        client.networks.get(name)
    except NotFound:
        client.networks.create(name, driver="bridge", labels={LABEL_ROLE: "network"})


def start_scripted_model(backend: DockerHost) -> Simulation:
    """Make sure the scripted model container runs (and answers) on the settings' network."""
    from docker.errors import APIError, NotFound

    client = backend.client
    network = backend.settings.network or SIMULATION_NETWORK
    ensure_network(client, network)
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
                labels={LABEL_ROLE: ROLE_MODEL, LABEL_ROOT: backend.root_label, LABEL_IMAGE: image_id},
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
    _wait_ready(container)
    return Simulation(
        upstream=f"http://{name}:{MODEL_PORT}",
        credentials={"ANTHROPIC_API_KEY": SIMULATED_API_KEY},
        network=network,
    )


def _wait_ready(container: Any) -> None:
    probe = (
        "import urllib.request;"
        f"urllib.request.urlopen('http://127.0.0.1:{MODEL_PORT}/health', timeout=2)"
    )
    if poll_until(
        lambda: container.exec_run(["python3", "-c", probe])[0] == 0,
        timeout_s=READY_TIMEOUT_S,
        interval_s=0.2,
    ):
        return
    raise SpawnFailed(
        f"The scripted model in {container.name} did not answer within {READY_TIMEOUT_S:g}s; "
        f"see 'docker logs {container.name}'."
    )


def stop_scripted_model(backend: DockerHost) -> bool:
    """Remove the scripted model if this root started it; True when something was removed."""
    from docker.errors import NotFound

    try:
        container = backend.client.containers.get(model_container_name())
    except NotFound:
        return False
    if (container.labels or {}).get(LABEL_ROOT) != backend.root_label:
        return False  # another root started it and may still be using it
    container.remove(force=True)
    return True


# --- the gateway ----------------------------------------------------------------------------


def gateway_container_name(volume: str) -> str:
    """``orchestrator-gateway``, with a suffix for any volume but the default one."""
    if volume == DEFAULT_VOLUME:
        return GATEWAY_CONTAINER
    return f"{GATEWAY_CONTAINER}-{hashlib.sha256(volume.encode()).hexdigest()[:10]}"


def start_gateway(backend: DockerHost, spec: GatewaySpec) -> None:
    """Make sure the root's gateway container runs as ``spec`` says, and answers."""
    from docker.errors import APIError, NotFound

    client = backend.client
    layout = backend.settings.layout
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
            wait_until_answering(layout, lambda: _exited(container))
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
    wait_until_answering(layout, lambda: _exited(container))


def _exited(container: Any) -> str | None:
    """Why the gateway container is not running, with its last log line; None while it runs."""
    with contextlib.suppress(Exception):
        container.reload()
        if container.status in ("exited", "dead"):
            last = bytes(container.logs(tail=3)).decode(errors="replace").strip().splitlines()
            return f"it exited: {last[-1] if last else 'no output'}; see 'docker logs {container.name}'"
    return None


def connect_gateway(backend: DockerHost, network: str) -> None:
    """Let the gateway reach the hosts on ``network`` (a profile's allowed hosts live there)."""
    container = backend.client.containers.get(gateway_container_name(backend.volume))
    if network not in container.attrs["NetworkSettings"]["Networks"]:
        backend.client.networks.get(network).connect(container)


def stop_gateway(backend: DockerHost) -> bool:
    """Stop this root's gateway container; True when one was running."""
    from docker.errors import NotFound

    try:
        container = backend.client.containers.get(gateway_container_name(backend.volume))
    except NotFound:
        return False
    container.stop(timeout=5)
    container.remove(force=True)
    return True


# --- doctor ---------------------------------------------------------------------------------


def engine_summary(backend: DockerHost) -> str:
    version = backend.client.version()
    return f"Docker engine {version.get('Version')} (API {version.get('ApiVersion')}) answers"


def image_summary(backend: DockerHost, image: str, *, required: bool) -> str:
    try:
        backend.require_image(image)
    except EnvironmentNotReady:
        if required:
            raise
        return f"{image} is not built (needed only by the profiles that use it)"
    return f"{image} is built"


def volume_summary(backend: DockerHost, image: str) -> str:
    """Run a tiny container as the worker user: it must see this root and write to it."""
    settings = backend.settings
    backend.require_image(image)
    marker = settings.layout.tasks_dir / f".doctor-{os.getpid()}"
    marker.write_text("x")
    probe = (
        f"test -f /orchestration/tasks/{marker.name} && "
        f"touch /orchestration/status/{marker.name} && rm /orchestration/status/{marker.name}"
    )
    try:
        backend.client.containers.run(
            image,
            entrypoint=["sh", "-c", probe],
            user=f"{WORKER_UID}:{WORKER_UID}",
            volumes={backend.volume: {"bind": "/orchestration", "mode": "rw"}},
            remove=True,
            stderr=True,
            network_mode="none",
        )
    except Exception as error:  # ContainerError carries the probe's stderr
        detail = getattr(error, "stderr", b"") or b""
        reason = bytes(detail).decode(errors="replace").strip() or "the worker cannot see this root"
        raise VolumeNotWritable(
            f"Workers cannot use the volume {backend.volume} as {settings.root} ({reason}); "
            f"mount the same volume here and for workers (--volume) and make it writable by "
            f"uid {WORKER_UID}."
        ) from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
    return f"workers see and can write {backend.volume} (mounted at {settings.root} here)"
