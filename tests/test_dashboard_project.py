"""The dashboard names the project it serves and links to the others' (issue 17)."""

from __future__ import annotations

from pathlib import Path

import httpx

from dashboard.project import parse_links
from orchestration_protocol import Layout
from tests.dashboard_helpers import served


def test_the_project_and_the_other_dashboards_are_served(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root").ensure()
    env = {
        "ORCHESTRATOR_PROJECT": "app",
        "ORCHESTRATOR_DASHBOARD_LINKS": "web=http://127.0.0.1:8452/ evil=javascript:alert(1)",
    }
    with served(layout.root, env=env) as url:
        info = httpx.get(f"{url}/api/project").json()
        page = httpx.get(url).text
    assert info == {"project": "app", "links": [{"name": "web", "url": "http://127.0.0.1:8452/"}]}
    assert 'id="project"' in page and 'id="projects"' in page


def test_without_a_project_nothing_is_named(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root").ensure()
    with served(
        layout.root, env={"ORCHESTRATOR_PROJECT": "", "ORCHESTRATOR_DASHBOARD_LINKS": ""}
    ) as url:
        assert httpx.get(f"{url}/api/project").json() == {"project": None, "links": []}


def test_only_well_formed_http_links_are_kept() -> None:
    links = parse_links("a=https://x.example/, b=ftp://x/ ,=http://x/ c=http:// d=http://h:1/p")
    assert [(link.name, link.url) for link in links] == [
        ("a", "https://x.example/"),
        ("d", "http://h:1/p"),
    ]
