"""The Docker engine's doctor: is the engine there, are the images built, can workers (another
uid) see and write this root; and how it names this root's workers."""

from __future__ import annotations

import contextlib
import os
import stat

from orchestration_protocol import Layout
from orchestration_protocol.contract import ENV_AGENT_USER, ENV_CONTAINER

from ...errors import EnvironmentNotReady, VolumeNotWritable
from ...profiles import WORKER_UID, Profile
from ..base import LABEL_ROLE, LABEL_ROOT, Doctor, Names
from ..running import EngineRoot
from ..services import Check, run_check
from .connection import DockerConnection
from .running import running_roots

ROLE_DOCTOR = "doctor"
"""The role of the doctor's probe container (``orchestrator-doctor-<root>-<pid>``)."""


class DockerNames(Names):
    """``worker-<root>-<task-id>``, ``pool-<root>-<pool>-<n>``: the root's short id in each."""

    def __init__(self, docker: DockerConnection) -> None:
        self.docker = docker

    @property
    def scope(self) -> str:
        return self.docker.scope

    def worker_env(self, worker: str, profile: Profile) -> dict[str, str]:
        return {ENV_CONTAINER: worker, ENV_AGENT_USER: profile.user}

    def follow_hint(self, worker: str, task_id: str) -> str:
        return f"docker logs -f {worker}"


class DockerDoctor(Doctor):
    """The engine, its images, and the volume as workers see it."""

    def __init__(self, docker: DockerConnection) -> None:
        self.docker = docker

    def preflight(self, profile: Profile) -> None:
        self.docker.require_image(profile.image)
        self.docker.require_network(profile.network)

    def prepare_root(self, layout: Layout) -> None:
        share_with_workers(layout)

    def checks(self, images: dict[str, bool]) -> list[Check]:
        engine = run_check("engine", self.engine_summary)
        if not engine.ok:
            return [engine]
        checks = [engine]
        checks += [
            run_check(f"image {image}", self.image_summary, image, required=needed)
            for image, needed in sorted(images.items())
        ]
        default = next((image for image, needed in images.items() if needed), None)
        if default is not None:
            checks.append(run_check("volume", self.volume_summary, default))
        if (gateway := self.gateway_check()) is not None:
            checks.append(gateway)
        return checks

    def gateway_check(self) -> Check | None:
        """The running gateway's own health check (its socket, and an upstream inside the
        stack); None when this root has no gateway container running."""
        from .services import gateway_container_name

        name = gateway_container_name(self.docker.scope)
        container = self.docker.container(name)
        if container is None or container.status != "running":
            return None
        health = container.attrs.get("State", {}).get("Health") or {}
        if health.get("Status") != "unhealthy":
            return Check("gateway", True, f"{name} runs ({health.get('Status', 'no health check')})")
        last = (health.get("Log") or [{}])[-1].get("Output", "").strip().splitlines()
        return Check("gateway", False, (
            f"The gateway {name} is unhealthy ({last[-1] if last else 'no output'}), as after "
            "'docker swarm leave' or an engine restart; the next 'orchestrator run' or 'spawn' "
            "reconnects it, or remove it with 'orchestrator cleanup --gateway --simulation'."
        ))

    def running(self) -> list[EngineRoot]:
        return running_roots(self.docker)

    def engine_summary(self) -> str:
        version = self.docker.client.version()
        return f"Docker engine {version.get('Version')} (API {version.get('ApiVersion')}) answers"

    def image_summary(self, image: str, *, required: bool) -> str:
        try:
            self.docker.require_image(image)
        except EnvironmentNotReady:
            if required:
                raise
            return f"{image} is not built (needed only by the profiles that use it)"
        return f"{image} is built"

    def volume_summary(self, image: str) -> str:
        """Run a tiny container as the worker user: it must see this root and write to it."""
        docker = self.docker
        root = docker.config.root
        docker.require_image(image)
        marker = Layout(root).tasks_dir / f".doctor-{os.getpid()}"
        marker.write_text("x")
        probe = (
            f"test -f /orchestration/tasks/{marker.name} && "
            f"touch /orchestration/status/{marker.name} && rm /orchestration/status/{marker.name}"
        )
        try:
            docker.client.containers.run(
                image,
                entrypoint=["sh", "-c", probe],
                name=f"orchestrator-doctor-{docker.scope}-{os.getpid()}",
                labels={LABEL_ROLE: ROLE_DOCTOR, LABEL_ROOT: docker.root_label},
                user=f"{WORKER_UID}:{WORKER_UID}",
                volumes={docker.volume: {"bind": "/orchestration", "mode": "rw"}},
                remove=True,
                stderr=True,
                network_mode="none",
            )
        except Exception as error:  # ContainerError carries the probe's stderr
            detail = getattr(error, "stderr", b"") or b""
            reason = (
                bytes(detail).decode(errors="replace").strip() or "the worker cannot see this root"
            )
            raise VolumeNotWritable(
                f"Workers cannot use the volume {docker.volume} as {root} ({reason}); "
                f"mount the same volume here and for workers (--volume) and make it writable by "
                f"uid {WORKER_UID}."
            ) from error
        finally:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        return f"workers see and can write {docker.volume} (mounted at {root} here)"


def share_with_workers(layout: Layout) -> None:
    """Let workers running as another uid write the protocol directories of a bind-mounted root."""
    for directory in (layout.root, *layout.directories()):
        info = directory.stat()
        wanted = 0o777 if directory != layout.root else 0o755
        if info.st_uid == WORKER_UID or stat.S_IMODE(info.st_mode) & wanted == wanted:
            continue
        try:
            directory.chmod(stat.S_IMODE(info.st_mode) | wanted)
        except OSError as error:
            raise VolumeNotWritable(
                f"The orchestration root {layout.root} is not writable ({directory}: workers run "
                f"as uid {WORKER_UID}: {error.strerror}); fix its permissions "
                f"(chmod -R a+rwX {layout.root}) or choose another root with --root."
            ) from error
