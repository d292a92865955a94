"""Checks before any worker starts, and ``orchestrator doctor``.

Each failure is one sentence naming the thing and the fix (an EnvironmentNotReady error); the
doctor runs every check and reports each, the spawning commands stop at the first.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration_protocol import Layout

from .backends import Backend, make_backend
from .backends.docker import DockerBackend
from .backends.swarm import SwarmBackend
from .config import ManagerSettings
from .credentials import collect_secrets, require_model_credentials
from .errors import EnvironmentNotReady, ManagerError, VolumeNotWritable
from .profiles import load_profiles

WORKER_UID = 1000


def _not_writable(root: Path, what: Path, reason: str) -> VolumeNotWritable:
    return VolumeNotWritable(
        f"The orchestration root {root} is not writable ({what}: {reason}); fix its permissions "
        f"(chmod -R a+rwX {root}) or choose another root with --root."
    )


def prepare_root(settings: ManagerSettings) -> Layout:
    """Create the protocol's directories and make sure this process and workers can write them."""
    layout = settings.layout
    root = layout.root
    try:
        layout.ensure()
        with tempfile.NamedTemporaryFile(dir=layout.tasks_dir, prefix=".probe-"):
            pass
    except OSError as error:
        raise _not_writable(
            root, Path(error.filename or root), error.strerror or str(error)
        ) from error
    if settings.backend in ("docker", "swarm"):
        share_with_workers(layout)
    return layout


def share_with_workers(layout: Layout) -> None:
    """Let workers running as uid 1000 write the protocol directories of a bind-mounted root."""
    for directory in (layout.root, *layout.directories()):
        info = directory.stat()
        wanted = 0o777 if directory != layout.root else 0o755
        if info.st_uid == WORKER_UID or stat.S_IMODE(info.st_mode) & wanted == wanted:
            continue
        try:
            directory.chmod(stat.S_IMODE(info.st_mode) | wanted)
        except OSError as error:
            raise _not_writable(
                layout.root, directory, f"workers run as uid {WORKER_UID}: {error.strerror}"
            ) from error


@dataclass(frozen=True)
class Check:
    """One doctor check: what was checked, whether it passed, and the sentence to show."""

    name: str
    ok: bool
    message: str


def _run_check(name: str, check: Callable[..., str], *args: Any, **kwargs: Any) -> Check:
    try:
        return Check(name, True, check(*args, **kwargs))
    except ManagerError as error:
        return Check(name, False, str(error))


def doctor(settings: ManagerSettings, *, simulate: bool = False) -> list[Check]:
    """Every check the spawning commands make, each reported (stops early only without Docker)."""
    checks = [_run_check("root", _check_root, settings)]
    profiles_check = _run_check("profiles", _check_profiles, settings)
    backend = make_backend(settings)
    try:
        return [*checks, *_backend_checks(settings, backend, profiles_check, simulate)]
    finally:
        backend.close()


def _backend_checks(
    settings: ManagerSettings, backend: Backend, profiles_check: Check, simulate: bool
) -> list[Check]:
    checks: list[Check] = []
    engine = _run_check("engine", _check_engine, backend)
    checks += [profiles_check, engine]
    if engine.ok and isinstance(backend, SwarmBackend):
        checks.append(_run_check("swarm", backend.check_swarm))
    if engine.ok and profiles_check.ok:
        profiles = load_profiles(settings.root, settings.profiles_path)
        default_image = profiles["default"].image
        for image in sorted({profile.image for profile in profiles.values()}):
            required = image == default_image
            checks.append(
                _run_check(f"image {image}", _check_image, backend, image, required=required)
            )
        if isinstance(backend, DockerBackend):
            checks.append(_run_check("volume", _check_volume, settings, backend, default_image))
    checks.append(_run_check("credentials", _check_credentials, simulate))
    return checks


def _check_root(settings: ManagerSettings) -> str:
    prepare_root(settings)
    return f"{settings.root} is writable"


def _check_profiles(settings: ManagerSettings) -> str:
    profiles = load_profiles(settings.root, settings.profiles_path)
    return "profiles: " + ", ".join(f"{name} -> {p.image}" for name, p in sorted(profiles.items()))


def _check_engine(backend: object) -> str:
    if isinstance(backend, DockerBackend):
        version = backend.client.version()
        return f"Docker engine {version.get('Version')} (API {version.get('ApiVersion')}) answers"
    from .backends.local import worker_command

    return f"local workers run {' '.join(worker_command())}"


def _check_image(backend: object, image: str, *, required: bool) -> str:
    if not isinstance(backend, DockerBackend):
        return "local backend: no image needed"
    try:
        backend.require_image(image)
    except EnvironmentNotReady:
        if required:
            raise
        return f"{image} is not built (needed only by the profiles that use it)"
    return f"{image} is built"


def _check_volume(settings: ManagerSettings, backend: DockerBackend, image: str) -> str:
    """Run a tiny container as the worker user: it must see this root and write to it."""
    backend.require_image(image)
    marker = settings.layout.tasks_dir / f".doctor-{os.getpid()}"
    marker.write_text("x")
    probe = (
        f"test -f /orchestration/tasks/{marker.name} && "
        f"touch /orchestration/status/{marker.name} && rm /orchestration/status/{marker.name}"
    )
    try:
        output = backend.client.containers.run(
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
    del output
    return f"workers see and can write {backend.volume} (mounted at {settings.root} here)"


def _check_credentials(simulate: bool) -> str:
    if simulate:
        return "simulation: the scripted model needs no credentials"
    secrets = collect_secrets()
    require_model_credentials(secrets)
    return "credentials: " + ", ".join(sorted(secrets)) if secrets else "credentials from env"
