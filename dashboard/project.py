"""The project a dashboard serves, and links to the other projects' dashboards (issue 17).

``$ORCHESTRATOR_PROJECT`` names it (the Compose stack sets it from ``COMPOSE_PROJECT_NAME``);
``$ORCHESTRATOR_DASHBOARD_LINKS`` lists the others as ``name=url`` separated by spaces or commas.
Only ``http`` and ``https`` links are kept: the page renders them as anchors.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from pydantic import BaseModel

PROJECT_ENV = "ORCHESTRATOR_PROJECT"
LINKS_ENV = "ORCHESTRATOR_DASHBOARD_LINKS"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ProjectLink(BaseModel):
    """Another project's dashboard."""

    name: str
    """The project's name."""
    url: str
    """Its dashboard's address (http or https)."""


class ProjectInfo(BaseModel):
    """What ``/api/project`` answers."""

    project: str | None
    """The project this dashboard serves; None when not set."""
    links: list[ProjectLink]
    """The other projects' dashboards."""


def parse_links(text: str) -> list[ProjectLink]:
    """The well-formed ``name=url`` entries of ``text``; others are left out."""
    links = []
    for entry in re.split(r"[\s,]+", text.strip()):
        name, _, url = entry.partition("=")
        parts = urlsplit(url)
        if NAME.fullmatch(name) and parts.scheme in ("http", "https") and parts.netloc:
            links.append(ProjectLink(name=name, url=url))
    return links


def project_info() -> ProjectInfo:
    """The project and links from the environment."""
    project = os.environ.get(PROJECT_ENV, "").strip() or None
    return ProjectInfo(project=project, links=parse_links(os.environ.get(LINKS_ENV, "")))
