"""One root's view of one Docker engine: the client (docker-py's ``Any`` stays in this folder
and in ``swarm/``), the volume workers mount, the root's label and short id, and the checks
every Docker part shares."""

from __future__ import annotations

import contextlib
from typing import Any

from ...errors import ImageMissing, SpawnFailed
from ...profiles import parse_bind_mount
from ..base import LABEL_ROLE, LABEL_ROOT, ROLE_WORKER, root_scope
from ..config import DockerConfig, SlurmConfig, SwarmConfig
from .engine import build_hint, connect_docker, find_volume


def parse_mount(spec: str) -> tuple[str, dict[str, str]]:
    """``source:target[:mode]`` as docker-py's ``volumes`` entry: (source, {bind, mode})."""
    mount = parse_bind_mount(spec)
    return mount.source, {"bind": mount.target, "mode": mount.mode}


class DockerConnection:
    """The engine as one root's parts meet it, connected on first use."""

    def __init__(
        self, config: DockerConfig | SwarmConfig | SlurmConfig, client: Any = None
    ) -> None:
        self.config = config
        self._client = client
        self._volume = config.volume

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect_docker(self.config.docker_host)
        return self._client

    @property
    def volume(self) -> str:
        """What workers mount at /orchestration (found out from Docker once, unless given)."""
        if self._volume is None:
            self._volume = find_volume(self.client, self.config.root)
        return self._volume

    @property
    def root_label(self) -> str:
        """Names this root in labels, so each root sees only its own workers."""
        kind = "bind" if self.volume.startswith("/") else "volume"
        return f"{kind}:{self.volume}"

    @property
    def scope(self) -> str:
        """The root's short id in every name this root makes on the engine."""
        return root_scope(self.root_label)

    def filters(self, role: str = ROLE_WORKER) -> dict[str, list[str]]:
        """The label filter for this root's things of ``role``."""
        return {"label": [f"{LABEL_ROLE}={role}", f"{LABEL_ROOT}={self.root_label}"]}

    def require_image(self, image: str) -> None:
        from docker.errors import ImageNotFound

        try:
            self.client.images.get(image)
        except ImageNotFound:
            raise ImageMissing(
                f"The image {image} is not built; build it with '{build_hint(image)}'."
            ) from None

    def require_network(self, network: str | None) -> None:
        from docker.errors import NotFound

        if not network:
            return
        try:
            self.client.networks.get(network)
        except NotFound:
            raise SpawnFailed(
                f"The Docker network {network} does not exist; create it with "
                f"'docker network create {network}' or choose another with --network."
            ) from None

    def container(self, name: str) -> Any:
        """The container ``name`` (or id); None when there is none."""
        from docker.errors import NotFound

        try:
            return self.client.containers.get(name)
        except NotFound:
            return None

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
