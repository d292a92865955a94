"""Checks before any worker starts, and ``orchestrator doctor``.

Each failure is one sentence naming the thing and the fix (an EnvironmentNotReady error); the
doctor runs every check and reports each, the spawning commands stop at the first. The engine's
own checks (engine, images, volume) are the backend's (``backend.doctor.checks``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from orchestration_protocol import Layout

from ..backends import Backend, make_backend
from ..backends.services import Check, run_check
from ..config import ManagerSettings
from ..credentials import collect_secrets, require_model_credentials
from ..errors import ManagerError, VolumeNotWritable
from ..profiles import load_profiles
from ..views.running import RootView, running_roots


def prepare_root(settings: ManagerSettings, backend: Backend) -> Layout:
    """Create the protocol's directories, make sure this process can write them, and let the
    backend make them usable by its workers."""
    layout = settings.layout
    root = layout.root
    try:
        layout.ensure()
        with tempfile.NamedTemporaryFile(dir=layout.tasks_dir, prefix=".probe-"):
            pass
    except OSError as error:
        raise VolumeNotWritable(
            f"The orchestration root {root} is not writable ({Path(error.filename or root)}: "
            f"{error.strerror or error}); fix its permissions (chmod -R a+rwX {root}) or choose "
            "another root with --root."
        ) from error
    backend.doctor.prepare_root(layout)
    return layout


@dataclass(frozen=True)
class DoctorReport:
    """What ``orchestrator doctor`` found."""

    checks: list[Check]
    """Every check the spawning commands make, each reported."""
    running: list[RootView] | None
    """What runs on the engine, per root; None when the engine could not be asked."""
    running_problem: str | None = None
    """Why the engine could not be asked."""

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def doctor(settings: ManagerSettings, *, simulate: bool = False) -> DoctorReport:
    """Every check, and what runs on the engine for every root."""
    backend = make_backend(settings.engine_config())
    try:
        checks = _checks(settings, backend, simulate)
        try:
            return DoctorReport(checks, running_roots(backend, settings.root))
        except ManagerError as error:
            return DoctorReport(checks, None, str(error))
    finally:
        backend.close()


def _checks(settings: ManagerSettings, backend: Backend, simulate: bool) -> list[Check]:
    """Every check the spawning commands make, each reported."""
    checks = [run_check("root", _check_root, settings, backend)]
    profiles = run_check("profiles", _check_profiles, settings)
    checks.append(profiles)
    images: dict[str, bool] = {}
    if profiles.ok:
        loaded = load_profiles(settings.root, settings.profiles_path)
        default_image = loaded["default"].image
        images = {profile.image: profile.image == default_image for profile in loaded.values()}
    checks += backend.doctor.checks(images)
    checks.append(run_check("credentials", _check_credentials, settings, simulate))
    return checks


def _check_root(settings: ManagerSettings, backend: Backend) -> str:
    prepare_root(settings, backend)
    return f"{settings.root} is writable"


def _check_profiles(settings: ManagerSettings) -> str:
    profiles = load_profiles(settings.root, settings.profiles_path)
    return "profiles: " + ", ".join(f"{name} -> {p.image}" for name, p in sorted(profiles.items()))


def _check_credentials(settings: ManagerSettings, simulate: bool) -> str:
    if simulate:
        return "simulation: the scripted model needs no credentials"
    secrets = collect_secrets()
    require_model_credentials(secrets, settings.model_switches)
    return "credentials: " + ", ".join(sorted(secrets)) if secrets else "credentials from env"
