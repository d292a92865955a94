"""The stub engine: in-process workers that keep the real protocol (``workers``), no gateway or
scripted model (``services`` accept and do nothing: a stub worker calls no model), and a doctor
with nothing to check. For millisecond tests of the dispatcher, the warm pool and recovery."""

from __future__ import annotations

from ...profiles import Profile
from ..base import Backend, Doctor, Services
from ..config import StubConfig
from ..running import EngineRoot, cleanup_hint, worker_things
from ..services import Check, GatewaySpec, Simulation
from .workers import KILLED, StubWorkers, fleet_of


class StubServices(Services):
    """Nothing runs beside stub workers: they call no model and need no gateway."""

    def start_scripted_model(self) -> Simulation:
        return Simulation(upstream="http://stub.invalid", credentials={})

    def stop_scripted_model(self) -> bool:
        return False

    def start_gateway(self, spec: GatewaySpec) -> None:
        pass

    def stop_gateway(self) -> bool:
        return False


class StubDoctor(Doctor):
    """Stub workers can always run; what runs is this process's table of them."""

    def __init__(self, config: StubConfig) -> None:
        self.config = config

    def preflight(self, profile: Profile) -> None:
        pass

    def checks(self, images: dict[str, bool]) -> list[Check]:
        return [Check("engine", True, "stub workers run as threads of this process")]

    def running(self) -> list[EngineRoot]:
        root = self.config.root
        things = worker_things(StubWorkers(self.config).all())
        if not things:
            return []
        return [EngineRoot(
            root=str(root), scope="", files=root, current=True, things=things,
            stop_hint=cleanup_hint(root, "stub"),
        )]


def make_stub(config: StubConfig) -> Backend:
    """The stub engine for ``config``'s root."""
    return Backend(
        name="stub", workers=StubWorkers(config), services=StubServices(), doctor=StubDoctor(config)
    )


__all__ = ["KILLED", "StubWorkers", "fleet_of", "make_stub"]
