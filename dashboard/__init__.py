"""The fleet dashboard: a read-only web page over the orchestration volume.

``orchestrator dashboard`` serves it (see :mod:`dashboard.server`); :func:`create_app` builds the
Starlette application; :mod:`dashboard.board` reads what it shows through the protocol and
:mod:`orchestration_views` (as the CLI does); :mod:`dashboard.events` pushes changes to the page as server-sent events,
driven by the protocol's watcher.
"""

from .app import create_app
from .server import DashboardSettings, serve

__all__ = ["DashboardSettings", "create_app", "serve"]
