"""Two ``./run.sh --simulate`` for two repositories at once, in tmux, with the names run.sh
derives for each (no ``--volume``, ``--name`` or ``--network``): both managers come up, each
runs a task of its own on its own volume, neither sees the other's; ``./run.sh`` for a
repository whose manager runs runs a command in it (docker exec), or says in one sentence how
to reach it; ``./run.sh --list`` shows both. Both repositories are called ``demo-app``: only
the hash of their paths tells them apart."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require
from tests.test_interactive_manager import (
    READY,
    START_TIMEOUT_S,
    TmuxSession,
    clean_env,
    remove_container_and_volume,
    require_tmux,
)

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_SH = str(REPO_ROOT / "run.sh")


@dataclass
class Project:
    """One repository, the names run.sh derives for it, and its manager's tmux session."""

    remote: Path
    tmux: TmuxSession | None = None

    @property
    def project(self) -> str:
        return f"demo-app-{hashlib.sha256(str(self.remote).encode()).hexdigest()[:8]}"

    @property
    def manager(self) -> str:
        return f"orchestrator-manager-{self.project}"

    @property
    def volume(self) -> str:
        return f"orchestration-{self.project}"

    @property
    def network(self) -> str:
        return f"orchestrator-net-{self.project}"


def images(docker_client) -> dict[str, str]:
    from docker.errors import ImageNotFound

    found = {
        "ORCHESTRATOR_MANAGER_IMAGE": os.environ.get("ORCHESTRATOR_MANAGER_IMAGE")
        or "claude-orchestrator",
        "ORCHESTRATOR_WORKER_IMAGE": os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker",
    }
    for image in found.values():
        try:
            docker_client.images.get(image)
        except ImageNotFound:
            require(False, f"image {image} is not built; run scripts/build-images.sh --offline")
    return found


def remove(docker_client, project: Project) -> None:
    if project.tmux is not None:
        project.tmux.kill()
    # the scripted model too: it is named after the worker image tagged for this test alone
    for role in ("worker", "gateway", "scripted-model"):
        labels = [f"orchestrator.root=volume:{project.volume}", f"orchestrator.role={role}"]
        for container in docker_client.containers.list(all=True, filters={"label": labels}):
            container.remove(force=True)
    remove_container_and_volume(project.manager, project.volume)
    for network in docker_client.networks.list(names=[project.network]):
        network.reload()
        for container in network.containers:
            network.disconnect(container, force=True)
        network.remove()


@pytest.fixture
def two_projects(docker_client, tmp_path: Path) -> Iterator[tuple[Project, Project, dict]]:
    require_tmux()
    found = images(docker_client)
    worker = found["ORCHESTRATOR_WORKER_IMAGE"]
    own_tag = f"{worker.split(':')[0]}:projects-{secrets.token_hex(3)}"
    docker_client.images.get(worker).tag(own_tag)  # so the scripted model it starts is its own
    env = clean_env(HOME=str(tmp_path), **{**found, "ORCHESTRATOR_WORKER_IMAGE": own_tag})
    os.chmod(tmp_path, 0o755)
    projects = []
    for side in ("a", "b"):
        (tmp_path / side).mkdir(mode=0o755)
        remote = (tmp_path / side / "demo-app.git").resolve()
        subprocess.run([str(REPO_ROOT / "scripts" / "demo-repo.sh"), str(remote)], check=True)
        projects.append(Project(remote))
    try:
        for project in projects:
            project.tmux = TmuxSession(
                f"e2e-{project.project}",
                [RUN_SH, "--simulate", "--repo", str(project.remote)],
                cwd=tmp_path,
                env=env,
            )
        yield projects[0], projects[1], env
    finally:
        for project in projects:
            remove(docker_client, project)
        docker_client.images.remove(own_tag, noprune=True)


def run_sh(env: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RUN_SH, "--simulate", *args], capture_output=True, text=True, timeout=300, env=env,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def test_two_repositories_run_side_by_side_and_the_same_one_reaches_its_manager(
    two_projects: tuple[Project, Project, dict],
) -> None:
    a, b, env = two_projects
    for project in (a, b):
        assert project.tmux is not None
        project.tmux.wait_for(READY, START_TIMEOUT_S)

    # each manager runs a task of its own (a command agent: no model needed) on its volume
    for project, side in ((a, "a"), (b, "b")):
        task = f"note-{side}"  # ids of their own: scoped worker names are another change's
        inside = (
            f"orchestrator task create 'echo from {side} > {side}.txt' --agent command --id {task}"
            f" && orchestrator spawn default {task} && orchestrator wait {task} --timeout 240"
        )
        done = run_sh(env, "--repo", str(project.remote), "--", "bash", "-c", inside)
        assert done.returncode == 0, done.stdout + done.stderr
    for project, side, other in ((a, "a", "b"), (b, "b", "a")):
        done = run_sh(env, "--repo", str(project.remote), "--", "orchestrator", "status", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        prompts = [row["prompt"] for row in json.loads(done.stdout)["tasks"]]
        assert len(prompts) == 1 and f"> {side}.txt" in prompts[0] and other not in prompts[0]

    # the same repository without a command: one sentence, and its manager is left alone
    again = run_sh(env, "--repo", str(a.remote))
    assert again.returncode == 3
    assert again.stderr.strip().splitlines() == [
        f"run.sh: the manager {a.manager} runs already for {a.remote}; reach its prompt with "
        f"'docker attach {a.manager}' (leave with Ctrl-P Ctrl-Q), or run a command in it with "
        f"'./run.sh --repo {a.remote} -- bash'."
    ]
    listed = run_sh(env, "--list").stdout
    for project in (a, b):
        assert f"{project.manager}\t{project.remote}\t{project.volume}\tUp" in listed
