"""Two roots on one engine with the same task ids (issue 17.1): every container and network a
root makes carries the root's short id in its name and its ``orchestrator.root`` label, so both
run at once, and ``status`` and ``cleanup`` of one never touch the other's."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration_protocol import Layout
from tests.conftest import docker_scope, docker_worker
from tests.gitrepo import make_remote
from tests.test_manager_docker import (  # noqa: F401 - engine: the fixture
    VENV_BIN,
    WORKER_IMAGE,
    engine,
    orchestrator,
    result_of,
)

pytestmark = [pytest.mark.docker, pytest.mark.e2e]


def root_env(tmp_path: Path, name: str) -> dict[str, str]:
    """The environment of ``orchestrator`` for a root of its own under ``tmp_path/name``."""
    home = tmp_path / name
    home.mkdir()
    layout = Layout(home / "orchestration").ensure()
    profiles = home / "profiles.yaml"
    profiles.write_text(f"default:\n  image: {WORKER_IMAGE}\n  memory: 512m\n")
    cleared = {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_BASE_URL",
               "ORCHESTRATOR_VOLUME", "ORCHESTRATOR_SIMULATE", "ORCHESTRATOR_NETWORK", "DOCKER_HOST"}  # fmt: skip
    return {
        **{key: value for key, value in os.environ.items() if key not in cleared},
        "ORCHESTRATION_DIR": str(layout.root),
        "ORCHESTRATOR_PROFILES": str(profiles),
        "ORCHESTRATOR_BACKEND": "docker",
        "ORCHESTRATOR_HEARTBEAT_S": "1",
        "REPO_URL": str(make_remote(home)),
    }


@pytest.fixture
def roots(engine, tmp_path: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:  # noqa: F811
    envs = (root_env(tmp_path, "a"), root_env(tmp_path, "b"))
    yield envs
    for env in envs:
        label = f"orchestrator.root=bind:{Path(env['ORCHESTRATION_DIR']).resolve()}"
        for container in engine.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
        for network in engine.networks.list(filters={"label": label}):
            network.remove()


def test_two_roots_with_the_same_task_ids_run_side_by_side_and_clean_up_apart(
    roots: tuple[dict[str, str], dict[str, str]], engine  # noqa: F811
) -> None:
    a, b = roots
    layout_a, layout_b = (Layout(Path(env["ORCHESTRATION_DIR"])) for env in roots)
    command = [str(VENV_BIN / "orchestrator"), "run", "--simulate", "-n", "1", "--agent", "command"]
    runs = [
        subprocess.Popen(
            [*command, "--json", f"sleep 2 && echo {name} > root.txt"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for name, env in (("a", a), ("b", b))
    ]
    outputs = [run.communicate(timeout=240)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    for layout in (layout_a, layout_b):
        assert result_of(layout, "task-001").status == "success"
    scope_a, scope_b = docker_scope(layout_a.root), docker_scope(layout_b.root)
    assert scope_a != scope_b
    for layout, scope in ((layout_a, scope_a), (layout_b, scope_b)):
        label = f"orchestrator.root=bind:{layout.root.resolve()}"
        made = engine.containers.list(all=True, filters={"label": label})
        names = sorted(container.name for container in made)
        assert names == sorted([
            docker_worker(layout.root, "task-001"),
            f"orchestrator-gateway-{scope}",
            f"orchestrator-scripted-model-{scope}",
        ])  # fmt: skip
        networks = [n.name for n in engine.networks.list(filters={"label": label})]
        assert networks == [f"orchestrator-net-{scope}"]
    status_a = json.loads(orchestrator(a, "status", "--json").stdout)
    assert [row["worker"] for row in status_a["tasks"]] == [docker_worker(layout_a.root, "task-001")]
    cleaned = orchestrator(a, "cleanup", "--gateway", "--simulation", "--json")
    assert json.loads(cleaned.stdout)["removed"] == [docker_worker(layout_a.root, "task-001")]
    label_a = f"orchestrator.root=bind:{layout_a.root.resolve()}"
    assert engine.containers.list(all=True, filters={"label": label_a}) == []
    assert engine.networks.list(filters={"label": label_a}) == []
    left = {c.name for c in engine.containers.list(all=True, filters={"label": f"orchestrator.root=bind:{layout_b.root.resolve()}"})}
    assert docker_worker(layout_b.root, "task-001") in left and f"orchestrator-gateway-{scope_b}" in left
