"""Shared fixtures. Tests marked ``docker`` need an engine: on a laptop without one they skip
with a reason; under ``CI=true`` they fail, so CI can never pass without running them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestration_protocol import Layout

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip (or fail under CI=true) when a real dependency of the test is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run in CI)")
    pytest.skip(reason)


def docker_scope(root: Path) -> str:
    """The short id the Docker engine gives a bind-mounted root in its names."""
    from manager.backends import root_scope

    return root_scope(f"bind:{root.resolve()}")


def docker_worker(root: Path, task_id: str) -> str:
    """The container name of a task's worker for the bind-mounted ``root``."""
    from manager.backends import worker_name

    return worker_name(task_id, docker_scope(root))


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """A fresh orchestration root on the real filesystem."""
    return Layout(tmp_path / "orchestration").ensure()


@pytest.fixture(scope="session")
def docker_client():
    """A live docker-py client; skips (fails in CI) when no engine answers."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as error:  # any failure to reach the engine means "no Docker here"
        require(False, f"no Docker engine answers: {error}")
    return client


@pytest.fixture
def cli(layout: Layout, remote: Path, capsys, monkeypatch):
    """Run ``orchestrator --root <layout> ...`` in-process with ``$REPO_URL`` at the module's
    ``remote`` fixture; returns (exit code, stdout, stderr)."""
    from manager.cli import main

    monkeypatch.setenv("REPO_URL", str(remote))

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main(["--root", str(layout.root), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


CLI_ENV_CLEARED = (
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "GIT_TOKEN",
    "GIT_SSH_KEY",
    "ORCHESTRATOR_PROFILES",
    "ORCHESTRATOR_SIMULATE",
    "ORCHESTRATOR_MAX_WORKERS",
    "ORCHESTRATOR_LEASE_S",
    "ORCHESTRATOR_BUDGET_USD",
)


@pytest.fixture
def cli_process(monkeypatch):
    """For tests that run the CLI in this process: the local backend, quick heartbeats, none of
    the caller's credentials or settings; the umask and SIGTERM handler the CLI sets are given
    back afterwards."""
    import signal

    umask = os.umask(0o022)
    os.umask(umask)
    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setenv("ORCHESTRATOR_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("ORCHESTRATOR_BACKEND", "local")
    for name in CLI_ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    yield
    os.umask(umask)
    signal.signal(signal.SIGTERM, handler)


@pytest.fixture(autouse=True)
def stop_local_services(tmp_path: Path):
    """After each test, stop the local gateway and scripted model that the local backend
    started for a root under the test's tmp_path: they stay up between commands by design, and
    a suite that left them running held hundreds of them (about 70 MB each)."""
    yield
    from manager.backends import LocalConfig
    from manager.backends.local import RECORDS_DIR, LocalServices

    for records in tmp_path.rglob(RECORDS_DIR):
        if records.is_dir():
            services = LocalServices(LocalConfig(root=records.parent))
            services.stop_gateway()
            services.stop_scripted_model()


from tests.clusters.slurm_cluster import slurm_cluster  # noqa: E402, F401 - each_engine's slurm
from tests.engines import each_engine  # noqa: E402, F401 - the fixture over every engine
