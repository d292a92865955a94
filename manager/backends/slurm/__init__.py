"""The SLURM engine: workers as batch jobs that start the hardened worker container on their
node (``workers``); the gateway and the scripted model as containers of this host's Docker
engine (the Docker engine's ``services``, by composition); the Docker checks plus the
cluster's and a node's own (``doctor``).

One machine here: the manager, the gateway and the only node share a host, so the gateway's
Unix sockets in the root reach every worker. On several nodes each node needs a gateway of its
own whose sockets its workers reach (see docs/slurm.md).
"""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

from orchestration_protocol import Layout

from ...errors import ImageMissing, SpawnFailed
from ...profiles import Profile
from ..base import Backend, Doctor
from ..config import SlurmConfig
from ..docker.connection import DockerConnection
from ..docker.doctor import DockerDoctor, DockerNames
from ..docker.engine import build_hint
from ..docker.running import running_roots
from ..docker.services import DockerServices
from ..running import EngineRoot
from ..services import Check, run_check
from . import cluster
from .cluster import SlurmUnavailable
from .script import NODE_PATH
from .workers import JOBS_DIR, SlurmWorkers, node_root

NODE_PROBE_TIMEOUT_S = 120.0


class SlurmNames(DockerNames):
    """As the Docker engine's (the container has the same name); output through the
    orchestrator, which reads the job's output file."""

    def follow_hint(self, worker: str, task_id: str) -> str:
        return f"orchestrator logs {task_id} -f"


class SlurmDoctor(Doctor):
    """The Docker engine's checks (the gateway runs there), that SLURM answers, and that a node
    has the runtime and the image."""

    def __init__(self, config: SlurmConfig, docker: DockerConnection) -> None:
        self.config = config
        self.docker = docker
        self.docker_doctor = DockerDoctor(docker)

    def require_engine(self) -> None:
        cluster.summary()

    def preflight(self, profile: Profile) -> None:
        cluster.summary()
        node_root(self.docker)
        self.docker_doctor.preflight(profile)
        if self.config.runtime == "podman":
            self._require_podman_image(profile.image)

    def _require_podman_image(self, image: str) -> None:
        found = subprocess.run(
            ["podman", "image", "exists", f"localhost/{image}"], capture_output=True, check=False
        )
        if found.returncode != 0:
            raise ImageMissing(
                f"Podman has no image localhost/{image}; load it from Docker with "
                f"'docker save {image} | podman load' (build it first with '{build_hint(image)}')."
            )

    def running(self) -> list[EngineRoot]:
        """This host's containers (the gateway, and the workers of jobs placed on this node)."""
        return running_roots(self.docker, "slurm")

    def checks(self, images: dict[str, bool]) -> list[Check]:
        checks = self.docker_doctor.checks(images)
        checks.insert(0, run_check("slurm", cluster.summary))
        if not checks[0].ok:
            return checks
        default = next((image for image, needed in images.items() if needed), None)
        if default is not None:
            checks.append(run_check("node", self.node_summary, default))
        return checks

    def node_summary(self, image: str) -> str:
        """A one-task job (``srun``) on a node: the runtime is there and has ``image``."""
        runtime = self.config.runtime
        wanted = f"localhost/{image}" if runtime == "podman" else image
        probe = (
            f"export PATH={NODE_PATH}; command -v {runtime} >/dev/null || "
            f"{{ echo 'no {runtime} on node '$(hostname); exit 3; }}; "
            f"{runtime} image inspect {shlex.quote(wanted)} >/dev/null 2>&1 || "
            f"{{ echo 'no image {wanted} on node '$(hostname); exit 4; }}; hostname"
        )
        args = ["srun", "--nodes=1", "--ntasks=1", "--time=1", "--export=NONE", "--quiet"]
        if self.config.partition:
            args.append(f"--partition={self.config.partition}")
        try:
            node = cluster.run_slurm(*args, "/bin/sh", "-c", probe, timeout_s=NODE_PROBE_TIMEOUT_S)
        except SpawnFailed as error:
            raise ImageMissing(
                f"A SLURM node cannot run workers ({error}); install {runtime} on the nodes and "
                f"load {wanted} there ({build_hint(image)}, then docker save | load)."
            ) from error
        return f"node {node.strip()} has {runtime} and {wanted}"

    def prepare_root(self, layout: Layout) -> None:
        self.docker_doctor.prepare_root(layout)
        (layout.root / JOBS_DIR).mkdir(mode=0o755, exist_ok=True)


def make_slurm(config: SlurmConfig, client: Any = None) -> Backend:
    """The SLURM engine for ``config``'s root (``client``: a Docker client, for tests)."""
    docker = DockerConnection(config, client)
    return Backend(
        name="slurm",
        workers=SlurmWorkers(config, docker),
        services=DockerServices(docker),
        doctor=SlurmDoctor(config, docker),
        names=SlurmNames(docker),
        closers=(docker.close,),
    )


__all__ = ["SlurmDoctor", "SlurmNames", "SlurmUnavailable", "SlurmWorkers", "make_slurm"]
