"""The worker image on a real engine, started as the Docker backend starts it (no network, no
secret, the runtime as root with a few capabilities, the agent as uid 1000), against a local bare
repo mirrored into the volume."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from manager.backends.docker.workers import RUNTIME_CAPS, WORKER_ROOT, worker_confinement
from manager.profiles import Profile
from orchestration_protocol import Layout, Result, Task, read_model, request_cancel, write_task
from orchestration_protocol.mirrors import mirror_dir
from tests.conftest import require
from tests.gitrepo import git, make_remote, show

pytestmark = [pytest.mark.docker, pytest.mark.e2e]
IMAGE = os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker"


@pytest.fixture(scope="module")
def worker_image(docker_client):
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get(IMAGE)
    except ImageNotFound:
        require(False, f"image {IMAGE} is not built; run scripts/build-images.sh --offline")
    return IMAGE


def make_mirror(layout: Layout, remote: Path) -> Path:
    """The volume's mirror of ``remote``, as the manager makes it before spawning."""
    mirror = mirror_dir(layout, str(remote))
    git("clone", "--quiet", "--bare", str(remote), str(mirror))
    return mirror


@pytest.fixture
def shared(tmp_path: Path) -> tuple[Layout, Path]:
    """An orchestration root holding the mirror of a bare repo; returns the root and the mirror."""
    layout = Layout(tmp_path / "orchestration").ensure()
    os.chmod(tmp_path, 0o755)
    remote = make_remote(tmp_path)
    make_mirror(layout, remote)
    return layout, remote


def run_worker(
    docker_client,
    image: str,
    layout: Layout,
    remote: Path,
    task_id: str,
    *,
    env: dict[str, str] | None = None,
    detach: bool = False,
    pool: bool = False,
    volumes: dict[str, dict[str, str]] | None = None,
):
    """Start ``orchestrator-worker --task`` (or ``--pool``) hardened as the Docker backend does
    (its init, read-only root, ``/tmp`` tmpfs and log options are the backend's own)."""
    name = f"worker-{task_id}-{secrets.token_hex(3)}"
    container = docker_client.containers.create(
        image,
        ["--pool"] if pool else ["--task", task_id],
        name=name,
        user="0:0",
        cap_drop=["ALL"],
        cap_add=RUNTIME_CAPS,
        security_opt=["no-new-privileges"],
        mem_limit="1g",
        pids_limit=256,
        network_mode="none",
        labels={"orchestrator.test": "worker"},
        environment={
            "ORCHESTRATION_DIR": WORKER_ROOT,
            "WORKER_ID": name,
            "ORCHESTRATOR_CONTAINER": name,
            "ORCHESTRATOR_HEARTBEAT_S": "0.5",
            "ORCHESTRATOR_AGENT_USER": "1000:1000",
            **(env or {}),
        },
        volumes={str(layout.root): {"bind": WORKER_ROOT, "mode": "rw"}, **(volumes or {})},
        **worker_confinement(Profile(name="default", image=image, memory="1g")),
    )
    container.start()
    if detach:
        return container
    status = container.wait(timeout=120)
    container.reload()
    container.exit = status["StatusCode"]
    return container


@pytest.fixture
def containers(docker_client):
    yield
    for container in docker_client.containers.list(
        all=True, filters={"label": "orchestrator.test=worker"}
    ):
        container.remove(force=True)


def result_of(layout: Layout, task_id: str) -> Result:
    return read_model(layout.result_file(task_id), Result, task_id)


def test_hardened_worker_container_completes_a_task(
    docker_client, worker_image, shared, containers
) -> None:
    layout, remote = shared
    write_task(
        layout,
        Task(
            id="t1",
            prompt="id -u > uid.txt && echo changed >> README.md && echo ok",
            agent="command",
            repo=str(remote),
        ),
    )
    container = run_worker(docker_client, worker_image, layout, remote, "t1")
    logs = container.logs().decode()
    assert container.exit == 0, logs
    result = result_of(layout, "t1")
    assert result.status == "success" and result.pushed and result.worker_id == container.name
    assert show(mirror_dir(layout, str(remote)), "orchestrator/t1", "uid.txt") == "1000\n"
    assert sorted(result.files_changed) == ["README.md", "uid.txt"]
    assert not (layout.artifacts_dir("t1") / "changes.bundle").exists()  # pushed: not needed
    assert "result: success" in logs and "result: success" in layout.log_file("t1").read_text()
    host_config = container.attrs["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"] and host_config["PidsLimit"] == 256
    assert host_config["NetworkMode"] == "none"


@pytest.mark.parametrize(
    ("task", "status", "error"),
    [
        (dict(prompt="echo x > x.txt; exit 3", agent="command"), "failed", "command exited 3"),
        (
            dict(prompt="true", agent="command", repo="/nowhere/repo.git"),
            "failed",
            "holds no mirror of /nowhere/repo.git",
        ),
        (
            dict(prompt="echo x > x.txt; sleep 60", agent="command", timeout_s=1),
            "timeout",
            "timed out after 1s",
        ),
    ],
    ids=["agent-fails", "no-mirror", "timeout"],
)
def test_failure_paths_end_in_a_result_that_says_so(
    docker_client, worker_image, shared, containers, task, status, error
) -> None:
    layout, remote = shared
    write_task(layout, Task(id="t1", **{"repo": str(remote), **task}))
    container = run_worker(docker_client, worker_image, layout, remote, "t1")
    assert container.exit == 0, container.logs().decode()
    result = result_of(layout, "t1")
    assert result.status == status and error in (result.error or "")


def test_unparsable_task_in_a_container_gets_a_failed_result(
    docker_client, worker_image, shared, containers
) -> None:
    layout, remote = shared
    layout.task_file("t1").write_text('{"id": "t1", "prompt": 42}')
    container = run_worker(docker_client, worker_image, layout, remote, "t1")
    assert container.exit == 0
    assert "field 'prompt'" in result_of(layout, "t1").error


@pytest.mark.parametrize("how", ["docker stop", "cancel request"])
def test_stopped_worker_reports_cancelled_within_ten_seconds(
    docker_client, worker_image, shared, containers, how
) -> None:
    layout, remote = shared
    write_task(
        layout,
        Task(
            id="t1",
            prompt="echo partial > partial.txt; sleep 300",
            agent="command",
            repo=str(remote),
        ),
    )
    container = run_worker(docker_client, worker_image, layout, remote, "t1", detach=True)
    deadline = time.monotonic() + 60
    while "running" not in (
        layout.status_file("t1").read_text() if layout.status_file("t1").exists() else ""
    ):
        assert time.monotonic() < deadline, container.logs().decode()
        time.sleep(0.1)
    time.sleep(0.5)
    asked = time.monotonic()
    if how == "docker stop":
        container.stop(timeout=10)
    else:
        request_cancel(layout, "t1", "not needed any more")
    assert container.wait(timeout=15)["StatusCode"] == 0
    assert time.monotonic() - asked < 10
    result = result_of(layout, "t1")
    assert result.status == "cancelled", result.error
    assert ("SIGTERM" if how == "docker stop" else "not needed") in result.error
    assert result.files_changed == ["partial.txt"]
    assert "+partial" in (layout.artifacts_dir("t1") / "changes.patch").read_text()
