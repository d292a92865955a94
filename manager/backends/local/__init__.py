"""The local engine: workers, the gateway and the scripted model as supervised processes on this
host, recorded under the root's ``.workers`` (so names need no root id: the root holds them)."""

from __future__ import annotations

from ...profiles import Profile
from ..base import Backend, Doctor
from ..config import LocalConfig
from ..services import Check, run_check
from .processes import RECORDS_DIR
from .services import LocalServices
from .workers import LocalWorkers, worker_command


class LocalDoctor(Doctor):
    """The worker command must be installed here."""

    def __init__(self, config: LocalConfig) -> None:
        self.config = config

    def preflight(self, profile: Profile) -> None:
        worker_command(self.config.worker_command)

    def checks(self, images: dict[str, bool]) -> list[Check]:
        def command() -> str:
            return f"local workers run {' '.join(worker_command(self.config.worker_command))}"

        return [run_check("engine", command)]


def make_local(config: LocalConfig) -> Backend:
    """The local engine for ``config``'s root."""
    return Backend(
        name="local",
        workers=LocalWorkers(config),
        services=LocalServices(config),
        doctor=LocalDoctor(config),
    )


__all__ = ["RECORDS_DIR", "LocalServices", "LocalWorkers", "make_local", "worker_command"]
