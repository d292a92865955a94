"""The manager against the real Docker engine and the real ``claude-worker`` image.

Every test gets its own orchestration root, bind-mounted into its workers and its gateway (so
containers of different tests never mix: they are found by the root's label), and a local bare
repository as the remote, which the manager mirrors into the root (workers have no network). Tasks use ``agent: command`` unless a test is about the
scripted model (``--simulate``), which runs the real ``claude`` binary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestration_protocol import Layout, Result, read_model
from orchestration_protocol.mirrors import mirror_dir
from tests.conftest import docker_worker, require
from tests.gitrepo import make_remote

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

VENV_BIN = Path(sys.executable).parent
WORKER_IMAGE = os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker"
SECRET = "sk-ant-test-secret-value-0123456789"


@pytest.fixture(scope="module")
def engine(docker_client):
    """The engine, with the worker image built (scripts/build-images.sh --offline makes it)."""
    try:
        docker_client.images.get(WORKER_IMAGE)
    except Exception:
        require(
            False,
            f"the {WORKER_IMAGE} image is missing; build it with scripts/build-images.sh --offline",
        )
    return docker_client


@pytest.fixture
def env(engine, tmp_path: Path, layout: Layout, monkeypatch) -> dict[str, str]:
    """Environment for ``orchestrator``: this test's root, a remote, and profiles using it."""
    remote = make_remote(tmp_path)
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(
        f"default:\n  image: {WORKER_IMAGE}\n  memory: 512m\n  cpus: 1\n"
        f"flutter:\n  image: {WORKER_IMAGE}\n  memory: 512m\n"
    )
    values = {
        "ORCHESTRATION_DIR": str(layout.root),
        "ORCHESTRATOR_PROFILES": str(profiles),
        "ORCHESTRATOR_BACKEND": "docker",
        "ORCHESTRATOR_HEARTBEAT_S": "1",
        "REPO_URL": str(remote),
    }
    for name in (
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_OAUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "ORCHESTRATOR_VOLUME",
        "ORCHESTRATOR_SIMULATE",
        "ORCHESTRATOR_NETWORK",
        "DOCKER_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    yield {**os.environ, **values}
    label = f"orchestrator.root=bind:{layout.root.resolve()}"
    for container in engine.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    for network in engine.networks.list(filters={"label": label}):
        network.remove()  # the root's own simulation network


def branches(layout: Layout, remote: Path) -> list[str]:
    """The branches of the volume's mirror of ``remote`` (where workers push)."""
    mirror = mirror_dir(layout, str(remote))
    return subprocess.run(
        [
            "git",
            "-c",
            "safe.directory=*",
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads",
        ],
        cwd=mirror,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()


def orchestrator(
    env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "orchestrator"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(VENV_BIN / "orchestrator"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def result_of(layout: Layout, task_id: str) -> Result:
    return read_model(layout.result_file(task_id), Result, task_id)


def running_tasks(layout: Layout) -> list[str]:
    found = []
    for path in layout.status_dir.glob("*.json"):
        if json.loads(path.read_text())["phase"] == "running":
            found.append(path.stem)
    return sorted(found)


def wait_until(condition, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_seed_manual_flow(env: dict[str, str], layout: Layout, engine) -> None:
    """cat > task file; spawn-worker flutter task-001; docker logs -f; the result file."""
    env = {**env, "ANTHROPIC_API_KEY": SECRET}
    subprocess.run(
        "cat > $ORCHESTRATION_DIR/tasks/task-001.json <<'EOF'\n"
        '{"id": "task-001", "agent": "command",\n'
        ' "prompt": "test ! -e /run/orchestrator-secrets && echo uid $(id -u) && echo done > done.txt"}\n'
        "EOF\n",
        shell=True,
        check=True,
        env=env,
    )
    spawned = subprocess.run(
        [str(VENV_BIN / "spawn-worker"), "flutter", "task-001"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert spawned.returncode == 0, spawned.stderr
    worker = docker_worker(layout.root, "task-001")
    assert worker in spawned.stdout and SECRET not in spawned.stdout + spawned.stderr
    logs = subprocess.run(
        ["docker", "logs", "-f", worker], capture_output=True, text=True, timeout=120
    )
    assert "uid 1000" in logs.stdout and "result: success" in logs.stdout
    result = json.loads((layout.results_dir / "task-001.json").read_text())
    assert result["status"] == "success" and result["files_changed"] == ["done.txt"]
    container = engine.containers.get(worker)
    config, host = container.attrs["Config"], container.attrs["HostConfig"]
    assert SECRET not in json.dumps(container.attrs)  # never in env, command or labels
    assert config["User"] == "0:0" and host["CapDrop"] == ["ALL"] and host["NetworkMode"] == "none"
    assert set(host["CapAdd"]) == {"SETUID", "SETGID", "CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL"}
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["Memory"] == 512 * 1024**2
    assert host["PidsLimit"] == 1024 and host["NanoCpus"] == 2 * 10**9
    assert config["Labels"]["orchestrator.task"] == "task-001"
    assert config["Labels"]["orchestrator.role"] == "worker"
    assert config["Labels"]["orchestrator.attempt"] == "1"
    for path in layout.root.rglob("*"):
        if path.is_file() and ".workers" not in path.parts:
            assert SECRET not in path.read_text(errors="replace"), path


def test_run_eight_tasks_with_four_workers(
    env: dict[str, str], layout: Layout, tmp_path: Path
) -> None:
    prompts = [f"sleep 2 && echo {n} > file-{n}.txt" for n in range(8)]
    started = time.monotonic()
    done = orchestrator(env, "run", "--agent", "command", "--max-workers", "4", "--json", *prompts)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["summary"] == {"success": 8}
    results = [result_of(layout, f"task-{n:03d}") for n in range(1, 9)]
    spans = [(r.started_at, r.completed_at) for r in results]
    most = max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)  # type: ignore[operator]
    assert most <= 4
    assert set(branches(layout, tmp_path / "remote.git")) >= {
        f"orchestrator/task-{n:03d}" for n in range(1, 9)
    }
    assert took < 90


# docker kill of workers and a restarted manager: tests/test_engines.py, on every engine


def test_a_malformed_task_file_shows_in_status_and_disturbs_nothing(
    env: dict[str, str], layout: Layout
) -> None:
    (layout.tasks_dir / "task-900.json").write_text('{"id": "task-900", "prompt": 42}')
    (layout.tasks_dir / "oops.json").write_text("{not json")
    done = orchestrator(env, "run", "--agent", "command", "-n", "2", "echo a", "echo b")
    assert done.returncode == 0, done.stdout + done.stderr
    status = orchestrator(env, "status")
    assert status.returncode == 0
    assert "oops.json is not valid JSON" in status.stdout
    assert "task-900.json does not match the Task schema" in status.stdout
    report = json.loads(orchestrator(env, "status", "--json").stdout)
    states = {row["id"]: row["state"] for row in report["tasks"]}
    assert states == {
        "task-900": "invalid",
        "oops": "invalid",
        "task-901": "success",
        "task-902": "success",
    }


def test_preflight_names_the_missing_image_and_credentials(
    env: dict[str, str], layout: Layout, tmp_path: Path
) -> None:
    profiles = Path(env["ORCHESTRATOR_PROFILES"])
    profiles.write_text(profiles.read_text() + "ghost:\n  image: claude-ghost\n")
    orchestrator(env, "task", "create", "--id", "t1", "--agent", "command", "true")
    missing = orchestrator(env, "spawn", "ghost", "t1")
    assert missing.returncode == 3
    assert missing.stderr.strip() == (
        "error: The image claude-ghost is not built; build it with "
        "'scripts/build-images.sh --profile ghost'."
    )
    no_credentials = orchestrator(env, "run", "Add a feature")
    assert no_credentials.returncode == 3 and "No Claude credentials found" in no_credentials.stderr
    doctor = json.loads(orchestrator(env, "doctor", "--simulate", "--json").stdout)
    checks = {check["name"]: check for check in doctor["checks"]}
    assert checks["volume"]["ok"] and checks[f"image {WORKER_IMAGE}"]["ok"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    doctor = orchestrator(env, "--volume", str(elsewhere), "doctor", "--simulate")
    assert doctor.returncode == 3 and f"Workers cannot use the volume {elsewhere}" in doctor.stdout


def test_simulated_run_drives_the_real_claude_binary(
    env: dict[str, str], layout: Layout, tmp_path: Path
) -> None:
    done = orchestrator(
        env, "run", "--simulate", "-n", "2", "--json", "Add dark mode support", "sleep 1"
    )
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        dark, sleepy = result_of(layout, "task-001"), result_of(layout, "task-002")
        assert dark.status == "success" and (dark.cost_usd or 0) > 0 and dark.num_turns
        assert any(name.startswith("simulated-") for name in dark.files_changed)
        assert sleepy.output.startswith("Slept 1 seconds")
        assert "orchestrator/task-001" in branches(layout, tmp_path / "remote.git")
    finally:
        orchestrator(env, "cleanup", "--simulation")
