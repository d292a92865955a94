"""The Swarm engine's services: a gateway on every node, and the scripted model, as Swarm services.

Why a ``global`` service: a Unix socket connects processes of one host only, so each node's
workers need a gateway on their own node. A ``global`` service is Swarm's own way to run one
task per node: a node that joins gets its gateway without the manager doing anything, a node
that leaves takes its gateway with it, and a gateway that dies or turns unhealthy is replaced by
Swarm (restart condition ``any``). One container per node started by the manager would need the
manager to reach every node's engine, which a Swarm manager need not.

- The sockets live in a node-local named volume ``orchestrator-gateway-<root>`` (a local volume
  is made by each node's own engine, in its own data root), mounted at
  :data:`GATEWAY_SOCKETS` in the gateway and read-only in that node's workers only, which find
  it through ``$ORCHESTRATOR_GATEWAY_DIR``. The shared root (``/orchestration``) holds what the
  gateway checks callers against (the claims, ``gateway/callers/``) and where it writes its
  ledger, each line naming its node (``$ORCHESTRATOR_GATEWAY_NODE``, Swarm's ``{{.Node.ID}}``).
- The credentials are Swarm secrets (encrypted in the managers' Raft log, mounted as files in
  ``/run/secrets`` of the gateway's containers only), one set per fingerprint of the gateway's
  settings; a change replaces the service and its secrets.
- The health check asks the gateway's ``/health`` on its own socket and, for an upstream inside
  the stack (the scripted model), resolves and connects to it, so a gateway that lost its
  network (DNS after a ``swarm leave``, a vanished overlay) turns unhealthy and Swarm replaces
  it.
- The scripted model (simulation) is a one-replica service on the root's attachable overlay
  network ``orchestrator-net-<root>`` with ``dnsrr`` endpoints (a VIP behind IPVS did not route in
  the test's network namespaces); the gateways join that network.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ...errors import SpawnFailed
from ...polling import poll_until
from ..base import LABEL_ROLE, LABEL_ROOT, Services
from ..docker.connection import DockerConnection
from ..docker.services import (
    CONTAINER_ROOT,
    GATEWAY_CAPS,
    GATEWAY_CONTAINER,
    LABEL_IMAGE,
    MODEL_CONTAINER,
    ROLE_NETWORK,
    simulation_network,
)
from ..services import (
    LABEL_CONFIG,
    MODEL_PORT,
    ROLE_GATEWAY,
    ROLE_MODEL,
    SIMULATED_API_KEY,
    GatewaySpec,
    Simulation,
    health_probe,
)

GATEWAY_SOCKETS = "/run/orchestrator-gateway"
"""Where the node-local socket volume is mounted, in the gateway and in that node's workers."""
SECRETS_DIR = "/run/secrets"
READY_S = 90.0
"""How long to wait for every node's gateway (a node's first start loads the image's layers)."""
SECOND = 1_000_000_000


def socket_volume(scope: str) -> str:
    """The node-local volume of a root's gateway sockets: ``orchestrator-gateway-<root>``."""
    return f"{GATEWAY_CONTAINER}-{scope}"


def socket_mount(scope: str, root_label: str, *, read_only: bool) -> dict[str, Any]:
    """The node-local socket volume as a service mount; Swarm makes the volume on each node the
    first time a task there needs it, labelled with the root so ``cleanup`` finds it."""
    return {
        "Type": "volume", "Source": socket_volume(scope), "Target": GATEWAY_SOCKETS,
        "ReadOnly": read_only,
        "VolumeOptions": {"Labels": {LABEL_ROLE: ROLE_GATEWAY, LABEL_ROOT: root_label}},
    }


class SwarmServices(Services):
    """The gateway as a ``global`` service and the scripted model as a service of the swarm."""

    def __init__(self, docker: DockerConnection) -> None:
        self.docker = docker

    @property
    def client(self) -> Any:
        return self.docker.client

    # --- the scripted model ------------------------------------------------------------------

    def _ensure_overlay(self, name: str) -> None:
        from docker.errors import NotFound

        try:
            self.client.networks.get(name)
        except NotFound:
            labels = {LABEL_ROLE: ROLE_NETWORK, LABEL_ROOT: self.docker.root_label}
            self.client.networks.create(name, driver="overlay", attachable=True, labels=labels)

    def start_scripted_model(self) -> Simulation:
        image = self.docker.config.worker_image
        network = simulation_network(self.docker)
        self._ensure_overlay(network)
        name = f"{MODEL_CONTAINER}-{self.docker.scope}"
        image_id = self.client.images.get(image).id
        container = {
            "Image": image,
            "Command": ["scripted-model"],
            "Args": ["--host", "0.0.0.0", "--port", str(MODEL_PORT), "--quiet",
                     "--require-key", SIMULATED_API_KEY],
            "User": "1000:1000",
            "CapabilityDrop": ["ALL"],
        }
        template = {
            "ContainerSpec": container,
            "Resources": {"Limits": {"MemoryBytes": 512 * 1024 * 1024}},
            "RestartPolicy": {"Condition": "any"},
            "Networks": [{"Target": network}],
        }
        labels = {LABEL_ROLE: ROLE_MODEL, LABEL_ROOT: self.docker.root_label, LABEL_IMAGE: image_id}
        self._ensure_service(name, template, labels, mode={"Replicated": {"Replicas": 1}})
        self._wait_running(name, every_node=False)
        return Simulation(
            upstream=f"http://{name}:{MODEL_PORT}",
            credentials={"ANTHROPIC_API_KEY": SIMULATED_API_KEY},
            network=network,
        )

    def stop_scripted_model(self) -> bool:
        stopped = self._remove_service(f"{MODEL_CONTAINER}-{self.docker.scope}")
        self._remove_own_network()
        return stopped

    # --- the gateway -------------------------------------------------------------------------

    def start_gateway(self, spec: GatewaySpec) -> None:
        image = self.docker.config.worker_image
        name = f"{GATEWAY_CONTAINER}-{self.docker.scope}"
        fingerprint = spec.fingerprint(self.client.images.get(image).id)
        labels = {LABEL_ROLE: ROLE_GATEWAY, LABEL_ROOT: self.docker.root_label,
                  LABEL_CONFIG: fingerprint}
        if self._labels_of(name).get(LABEL_CONFIG) != fingerprint:
            self._remove_service(name)
            self._remove_secrets()
            template = self._gateway_template(spec, image, self._make_secrets(spec, fingerprint))
            self._ensure_service(name, template, labels, mode={"Global": {}})
        self._wait_running(name, every_node=True)

    def _gateway_template(
        self, spec: GatewaySpec, image: str, secrets: list[dict[str, Any]]
    ) -> dict[str, Any]:
        env = {
            **spec.env,
            "ORCHESTRATION_DIR": CONTAINER_ROOT,
            "ORCHESTRATOR_GATEWAY_DIR": GATEWAY_SOCKETS,
            "ORCHESTRATOR_GATEWAY_NODE": "{{.Node.ID}}",
            "ORCHESTRATOR_SECRETS_DIR": SECRETS_DIR,
        }
        kind = "bind" if self.docker.volume.startswith("/") else "volume"
        container = {
            "Image": image,
            "Command": ["orchestrator-gateway"],
            "Args": ["--root", CONTAINER_ROOT, "--upstream", spec.upstream],
            "Env": [f"{key}={value}" for key, value in env.items()],
            "User": "0:0",
            "Mounts": [
                {"Type": kind, "Source": self.docker.volume, "Target": CONTAINER_ROOT},
                socket_mount(self.docker.scope, self.docker.root_label, read_only=False),
            ],
            "Secrets": secrets,
            "CapabilityDrop": ["ALL"],
            "CapabilityAdd": [f"CAP_{cap}" for cap in GATEWAY_CAPS],
            "Healthcheck": {"Test": health_probe(spec.upstream, f"{GATEWAY_SOCKETS}/api.sock"), "Interval": 5 * SECOND,
                            "Timeout": 5 * SECOND, "Retries": 3, "StartPeriod": 2 * SECOND},
        }
        return {
            "ContainerSpec": container,
            "Resources": {"Limits": {"MemoryBytes": 512 * 1024 * 1024, "Pids": 256}},
            "RestartPolicy": {"Condition": "any", "Delay": SECOND},
            "Networks": [{"Target": network} for network in spec.networks],
        }

    def _make_secrets(self, spec: GatewaySpec, fingerprint: str) -> list[dict[str, Any]]:
        """One Swarm secret per credential; the gateway reads them as files in /run/secrets."""
        made = []
        for key, value in sorted(spec.credentials.items()):
            secret_name = f"orchestrator-{self.docker.scope}-{fingerprint}-{key}"
            labels = {LABEL_ROLE: ROLE_GATEWAY, LABEL_ROOT: self.docker.root_label}
            secret = self.client.api.create_secret(secret_name, value.encode(), labels=labels)
            made.append({
                "SecretID": secret["ID"], "SecretName": secret_name,
                "File": {"Name": key, "UID": "0", "GID": "0", "Mode": 0o400},
            })
        return made

    def _remove_secrets(self) -> None:
        from docker.errors import APIError

        filters = {"label": [f"{LABEL_ROLE}={ROLE_GATEWAY}", f"{LABEL_ROOT}={self.docker.root_label}"]}
        for secret in self.client.api.secrets(filters=filters):
            with contextlib.suppress(APIError):
                self.client.api.remove_secret(secret["ID"])

    def stop_gateway(self) -> bool:
        stopped = self._remove_service(f"{GATEWAY_CONTAINER}-{self.docker.scope}")
        poll_until(lambda: not self._tasks_left(), timeout_s=15, interval_s=0.5)
        self._remove_secrets()
        self._remove_own_network()
        self._remove_socket_volume()
        return stopped

    def _remove_socket_volume(self) -> None:
        """This engine's socket volume (another node's goes with 'docker volume prune --filter
        label=orchestrator.root=...' there: a manager reaches no other node's engine)."""
        from docker.errors import APIError, NotFound

        def removed() -> bool:
            try:
                self.client.volumes.get(socket_volume(self.docker.scope)).remove()
            except NotFound:
                return True
            except APIError:
                return False  # a container of the gateway is still leaving
            return True

        poll_until(removed, timeout_s=15, interval_s=0.5)

    def connect_gateway(self, network: str) -> None:
        raise SpawnFailed(
            f"The swarm gateway joins only the networks it was started with, not {network}; "
            "use an overlay network in the profile and restart the gateway "
            "(orchestrator cleanup --gateway)."
        )

    # --- shared ------------------------------------------------------------------------------

    def _labels_of(self, name: str) -> dict[str, str]:
        from docker.errors import NotFound

        try:
            return dict(self.client.api.inspect_service(name)["Spec"].get("Labels") or {})
        except NotFound:
            return {}

    def _ensure_service(
        self, name: str, template: dict[str, Any], labels: dict[str, str], mode: dict[str, Any]
    ) -> None:
        """Create ``name`` unless it runs with these labels (else replace it)."""
        from docker.errors import APIError

        current = self._labels_of(name)
        if current == labels:
            return
        if current:
            self._remove_service(name)
        try:
            self.client.api.create_service(
                template, name=name, labels=labels, mode=mode,
                endpoint_spec={"Mode": "dnsrr"},
            )
        except APIError as error:
            raise SpawnFailed(
                f"Swarm refused to create the service {name} ({error.explanation}); see "
                f"'docker service ps {name}'."
            ) from error

    def _remove_service(self, name: str) -> bool:
        from docker.errors import APIError, NotFound

        try:
            self.client.api.remove_service(name)
        except NotFound:
            return False
        except APIError:
            return False
        return True

    def _tasks_left(self) -> bool:
        filters = {"label": [f"{LABEL_ROOT}={self.docker.root_label}"]}
        return any(
            self.client.api.services(filters={**filters, "name": [prefix]})
            for prefix in (GATEWAY_CONTAINER, MODEL_CONTAINER)
        )

    def _remove_own_network(self) -> None:
        from docker.errors import APIError

        if self.docker.config.network is not None:
            return
        name = simulation_network(self.docker)

        def removed() -> bool:
            for found in self.client.networks.list(names=[name]):
                if (found.attrs.get("Labels") or {}).get(LABEL_ROOT) != self.docker.root_label:
                    return True
                try:
                    found.remove()
                except APIError:
                    return False  # its services' containers are still leaving it
            return True

        poll_until(removed, timeout_s=15, interval_s=0.5)

    def _ready_nodes(self) -> set[str]:
        return {
            node["ID"] for node in self.client.api.nodes()
            if (node.get("Status") or {}).get("State") == "ready"
            and (node.get("Spec") or {}).get("Availability") == "active"
        }

    def _wait_running(self, name: str, *, every_node: bool) -> None:
        """Until the service's tasks run (healthy, where it has a health check): one on every
        ready node, or one at all."""
        def running() -> bool:
            tasks = self.client.api.tasks(filters={"service": name, "desired-state": "running"})
            up = {t.get("NodeID") for t in tasks if (t.get("Status") or {}).get("State") == "running"}
            return up >= self._ready_nodes() if every_node else bool(up)

        if poll_until(running, timeout_s=READY_S, interval_s=0.5):
            return
        raise SpawnFailed(
            f"The service {name} is not running on every node within {READY_S:g}s; see "
            f"'docker service ps --no-trunc {name}'."
        )

