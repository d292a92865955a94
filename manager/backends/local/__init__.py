"""The local engine: workers, the gateway and the scripted model as supervised processes on this
host, recorded under the root's ``.workers`` (so names need no root id: the root holds them)."""

from __future__ import annotations

from ...profiles import Profile
from ..base import Backend, Doctor
from ..config import LocalConfig
from ..running import EngineRoot, cleanup_hint, worker_things
from ..services import Check, run_check
from .processes import RECORDS_DIR
from .services import LocalServices, running_services
from .workers import LocalWorkers, worker_command


class LocalDoctor(Doctor):
    """The worker command must be installed here."""

    def __init__(self, config: LocalConfig, workers: LocalWorkers) -> None:
        self.config = config
        self.workers = workers

    def preflight(self, profile: Profile) -> None:
        worker_command(self.config.worker_command)

    def checks(self, images: dict[str, bool]) -> list[Check]:
        def command() -> str:
            return f"local workers run {' '.join(worker_command(self.config.worker_command))}"

        return [run_check("engine", command)]

    def running(self) -> list[EngineRoot]:
        """This root's gateway, scripted model and workers (processes hold one root only)."""
        root = self.config.root
        things = (*running_services(self.config), *worker_things(self.workers.all()))
        if not things:
            return []
        return [EngineRoot(
            root=str(root), scope="", files=root, current=True, things=things,
            stop_hint=cleanup_hint(root, "local"),
        )]


def make_local(config: LocalConfig) -> Backend:
    """The local engine for ``config``'s root."""
    workers = LocalWorkers(config)
    return Backend(
        name="local",
        workers=workers,
        services=LocalServices(config),
        doctor=LocalDoctor(config, workers),
    )


__all__ = ["RECORDS_DIR", "LocalServices", "LocalWorkers", "make_local", "worker_command"]
