"""The Docker engine's services: the scripted model and the gateway as containers of this root.

The scripted model is the container ``orchestrator-scripted-model-<root>`` (the generic worker
image with ``--entrypoint scripted-model``, replaced when the image changes) on the network
``orchestrator-net-<root>`` (or the configured one), which the gateway joins; workers never
reach it but through the gateway. ``orchestrator cleanup --simulation`` removes both.

The gateway is the container ``orchestrator-gateway-<root>``: the generic worker image with
``--entrypoint orchestrator-gateway``, the volume at ``/orchestration`` (its sockets live in
``gateway/`` there), the credentials copied in as files, on the networks where its upstream and
allowed hosts are; a change of upstream, credentials, networks or image replaces it.
``orchestrator cleanup --gateway`` stops it. ``<root>`` is the root's short id
(:func:`manager.backends.base.root_scope`), so every root has its own.
"""

from __future__ import annotations

import contextlib
from typing import Any

from orchestration_protocol import Layout

from ...errors import SpawnFailed
from ...polling import poll_until
from ..base import LABEL_ROLE, LABEL_ROOT, Services
from ..services import (
    LABEL_CONFIG,
    MODEL_PORT,
    READY_TIMEOUT_S,
    ROLE_GATEWAY,
    ROLE_MODEL,
    SIMULATED_API_KEY,
    GatewaySpec,
    Simulation,
    health_probe,
    upstream_probe,
    wait_until_answering,
)
from .connection import DockerConnection
from .engine import secrets_archive

CONTAINER_ROOT = "/orchestration"
"""Where the gateway sees the volume."""
ROLE_NETWORK = "network"
SECOND = 1_000_000_000


SIMULATION_NETWORK = "orchestrator-net"
MODEL_CONTAINER = "orchestrator-scripted-model"
GATEWAY_CONTAINER = "orchestrator-gateway"
LABEL_IMAGE = "orchestrator.image-id"
GATEWAY_CAPS = ["DAC_OVERRIDE", "FOWNER", "CHOWN"]
"""Root in its container without these could not write the volume's files made by others."""


# --- the scripted model ---------------------------------------------------------------------


def model_container_name(scope: str) -> str:
    """``orchestrator-scripted-model-<root>``."""
    return f"{MODEL_CONTAINER}-{scope}"


def simulation_network(docker: DockerConnection) -> str:
    """The configured network, else this root's own ``orchestrator-net-<root>``."""
    return docker.config.network or f"{SIMULATION_NETWORK}-{docker.scope}"


def ensure_network(docker: DockerConnection, name: str) -> None:
    from docker.errors import NotFound

    try:
        docker.client.networks.get(name)
    except NotFound:
        labels = {LABEL_ROLE: ROLE_NETWORK, LABEL_ROOT: docker.root_label}
        docker.client.networks.create(name, driver="bridge", labels=labels)


def start_scripted_model(docker: DockerConnection) -> Simulation:
    """Make sure the scripted model container runs (and answers) on the root's network."""
    from docker.errors import APIError, NotFound

    client = docker.client
    image = docker.config.worker_image
    network = simulation_network(docker)
    ensure_network(docker, network)
    docker.require_image(image)
    image_id = client.images.get(image).id
    name = model_container_name(docker.scope)
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
                image,
                entrypoint=["scripted-model"],
                command=[
                    "--host", "0.0.0.0", "--port", str(MODEL_PORT), "--quiet",
                    "--require-key", SIMULATED_API_KEY,
                ],
                name=name,
                network=network,
                labels={LABEL_ROLE: ROLE_MODEL, LABEL_ROOT: docker.root_label, LABEL_IMAGE: image_id},
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


def stop_scripted_model(docker: DockerConnection) -> bool:
    """Remove this root's scripted model and its own network; True when the model was there."""
    container = docker.container(model_container_name(docker.scope))
    if container is not None and (container.labels or {}).get(LABEL_ROOT) == docker.root_label:
        container.remove(force=True)
    remove_own_network(docker)
    return container is not None


def remove_own_network(docker: DockerConnection) -> None:
    """Remove this root's own simulation network once nothing is on it (else leave it)."""
    from docker.errors import APIError

    if docker.config.network is not None:
        return
    for found in docker.client.networks.list(names=[simulation_network(docker)]):
        if (found.attrs.get("Labels") or {}).get(LABEL_ROOT) == docker.root_label:
            with contextlib.suppress(APIError):  # the gateway or the model is still on it
                found.remove()


# --- the gateway ----------------------------------------------------------------------------


def gateway_container_name(scope: str) -> str:
    """``orchestrator-gateway-<root>``."""
    return f"{GATEWAY_CONTAINER}-{scope}"


def start_gateway(docker: DockerConnection, spec: GatewaySpec) -> None:
    """Make sure the root's gateway container runs as ``spec`` says, and answers."""
    from docker.errors import APIError, NotFound

    client = docker.client
    layout = Layout(docker.config.root)
    image = docker.config.worker_image
    docker.require_image(image)
    name = gateway_container_name(docker.scope)
    fingerprint = spec.fingerprint(client.images.get(image).id)
    try:
        container = client.containers.get(name)
    except NotFound:
        container = None
    if container is not None:
        fresh = (container.labels or {}).get(LABEL_CONFIG) == fingerprint
        if fresh and container.status == "running":
            wait_until_answering(layout, lambda: _exited(container))
            if repaired(docker, container, spec):
                return
        container.remove(force=True)
    try:
        container = client.containers.create(
            image,
            entrypoint=["orchestrator-gateway"],
            command=["--root", CONTAINER_ROOT, "--upstream", spec.upstream],
            name=name,
            network=spec.networks[0] if spec.networks else None,
            labels={LABEL_ROLE: ROLE_GATEWAY, LABEL_ROOT: docker.root_label, LABEL_CONFIG: fingerprint},
            environment={**spec.env, "ORCHESTRATION_DIR": CONTAINER_ROOT},
            volumes={docker.volume: {"bind": CONTAINER_ROOT, "mode": "rw"}},
            user="0:0",
            cap_drop=["ALL"],
            cap_add=GATEWAY_CAPS,
            security_opt=["no-new-privileges"],
            mem_limit="512m",
            pids_limit=256,
            restart_policy={"Name": "unless-stopped"},
            healthcheck={
                "test": health_probe(spec.upstream, f"{CONTAINER_ROOT}/gateway/api.sock"),
                "interval": 10 * SECOND, "timeout": 5 * SECOND, "retries": 3,
                "start_period": 2 * SECOND,
            },
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


def upstream_problem(container: Any, upstream: str) -> str | None:
    """Why the gateway container cannot reach an upstream inside the stack; None when it can
    (or the upstream is public, and not probed)."""
    probe = upstream_probe(upstream)
    if not probe:
        return None
    code, output = container.exec_run(["python3", "-c", probe])
    if code == 0:
        return None
    lines = bytes(output or b"").decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit {code}"


def reconnect(docker: DockerConnection, container: Any) -> None:
    """Take ``container`` off its user-defined networks and put it back (with its aliases): after
    a ``docker swarm leave`` or an engine restart, that gives back its name on them."""
    from docker.errors import APIError

    container.reload()
    for name, attached in container.attrs["NetworkSettings"]["Networks"].items():
        if name in ("bridge", "host", "none"):
            continue
        with contextlib.suppress(APIError):
            network = docker.client.networks.get(name)
            network.disconnect(container, force=True)
            network.connect(container, aliases=attached.get("Aliases") or None)


def repaired(docker: DockerConnection, gateway: Any, spec: GatewaySpec) -> bool:
    """Whether the running gateway reaches its upstream, once the scripted model and the gateway
    are reconnected if it did not (their names lost, as after ``docker swarm leave``)."""
    if upstream_problem(gateway, spec.upstream) is None:
        return True
    model = docker.container(model_container_name(docker.scope))
    for container in (model, gateway):
        if container is not None:
            reconnect(docker, container)
    reached = poll_until(
        lambda: upstream_problem(gateway, spec.upstream) is None, timeout_s=10, interval_s=0.5
    )
    return bool(reached)


def _exited(container: Any) -> str | None:
    """Why the gateway container is not running, with its last log line; None while it runs."""
    with contextlib.suppress(Exception):
        container.reload()
        if container.status in ("exited", "dead"):
            last = bytes(container.logs(tail=3)).decode(errors="replace").strip().splitlines()
            return f"it exited: {last[-1] if last else 'no output'}; see 'docker logs {container.name}'"
    return None


def connect_gateway(docker: DockerConnection, network: str) -> None:
    """Let the gateway reach the hosts on ``network`` (a profile's allowed hosts live there)."""
    container = docker.client.containers.get(gateway_container_name(docker.scope))
    if network not in container.attrs["NetworkSettings"]["Networks"]:
        docker.client.networks.get(network).connect(container)


def stop_gateway(docker: DockerConnection) -> bool:
    """Stop this root's gateway container; True when one was running."""
    container = docker.container(gateway_container_name(docker.scope))
    if container is None:
        return False
    container.stop(timeout=5)
    container.remove(force=True)
    remove_own_network(docker)
    return True


class DockerServices(Services):
    """The scripted model and the gateway as containers of this root on the engine."""

    def __init__(self, docker: DockerConnection) -> None:
        self.docker = docker

    def start_scripted_model(self) -> Simulation:
        return start_scripted_model(self.docker)

    def stop_scripted_model(self) -> bool:
        return stop_scripted_model(self.docker)

    def start_gateway(self, spec: GatewaySpec) -> None:
        start_gateway(self.docker, spec)

    def stop_gateway(self) -> bool:
        return stop_gateway(self.docker)

    def connect_gateway(self, network: str) -> None:
        connect_gateway(self.docker, network)
