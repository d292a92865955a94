"""``./run.sh --simulate -- COMMAND`` for real: the dry run cleans up after itself."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require
from tests.launcher.test_interactive_manager import (
    REPO_ROOT,
    clean_env,
    remove_container_and_volume,
)

pytestmark = [pytest.mark.docker, pytest.mark.e2e]


def containers(role: str, volume: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=orchestrator.role={role}",
         "--filter", f"label=orchestrator.root=volume:{volume}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.split()


def test_a_dry_run_leaves_no_scripted_model_or_gateway_running(
    docker_client, tmp_path: Path
) -> None:
    """A new user found the scripted model still running after run.sh had ended. The run gets
    a worker image tag of its own, so the scripted model it starts is its own (the container is
    named after the image) and its removal is this run's doing."""
    from docker.errors import ImageNotFound

    worker = os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker"
    manager = os.environ.get("ORCHESTRATOR_MANAGER_IMAGE") or "claude-orchestrator"
    for image in (worker, manager):
        try:
            docker_client.images.get(image)
        except ImageNotFound:
            require(False, f"image {image} is not built; run scripts/build-images.sh --offline")
    token = secrets.token_hex(3)
    own_tag = f"{worker.split(':')[0]}:dry-run-{token}"
    docker_client.images.get(worker).tag(own_tag)
    volume, name = f"dry-{token}", f"orchestrator-manager-dry-{token}"
    os.chmod(tmp_path, 0o755)
    remote = tmp_path / "demo-app.git"
    subprocess.run([str(REPO_ROOT / "scripts" / "demo-repo.sh"), str(remote)], check=True)
    running_models = (  # the manager image has docker-py, not the docker CLI
        "import docker; print(*[c.id for c in docker.from_env().containers.list(filters={'label': "
        f"['orchestrator.role=scripted-model', 'orchestrator.root=volume:{volume}']}})])"
    )
    inside = (
        'orchestrator run --json "Add a greeting file" > /tmp/run.json; code=$?; '
        f'python3 -c "{running_models}"; cat /tmp/run.json; exit $code'
    )
    env = clean_env(
        HOME=str(tmp_path), ORCHESTRATOR_WORKER_IMAGE=own_tag, ORCHESTRATOR_MANAGER_IMAGE=manager
    )
    try:
        done = subprocess.run(
            [str(REPO_ROOT / "run.sh"), "--simulate", "--repo", str(remote), "--volume", volume,
             "--name", name, "--", "bash", "-c", inside],
            capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        started = done.stdout.split("{", 1)[0].split()
        assert len(started) == 1, done.stdout  # the run's own scripted model was running
        assert '"succeeded": true' in done.stdout
        assert containers("scripted-model", volume) == []
        assert containers("gateway", volume) == []
    finally:
        for role in ("worker", "gateway", "scripted-model"):
            for container_id in containers(role, volume):
                subprocess.run(["docker", "rm", "-f", container_id], capture_output=True)
        remove_container_and_volume(name, volume)
        docker_client.images.remove(own_tag, noprune=True)
