"""The Compose stack (compose.yaml + compose.simulate.yaml) for real: ``docker-compose up -d``
with a project, a volume and a port of this test's own, a task dropped into the volume gets a
result, a dispatcher killed mid-task (SIGKILL from the host, as the OOM killer would) is restarted
by its restart policy and loses nothing, ``docker-compose restart`` loses nothing either; the
dashboard answers with the stack's board and asks for its token. Offline: the scripted model
stands in for the API, the real ``claude`` binary runs in the workers, no credential is used.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import require
from tests.dashboard_helpers import free_port
from tests.gitrepo import make_remote

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
WORKER_IMAGE = os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker"
MANAGER_IMAGE = os.environ.get("ORCHESTRATOR_MANAGER_IMAGE") or "claude-orchestrator"
TOKEN = "compose-test-token-" + "0" * 16


class Stack:
    """One Compose project of this test's own."""

    def __init__(self, tmp_path: Path, env_file: dict[str, str] | None = None) -> None:
        """``env_file``: the project's settings, written to a file given with --env-file (the
        several-projects way, docs/service.md), else they come from the environment."""
        self.project = f"orchtest{uuid.uuid4().hex[:8]}"
        self.volume = f"{self.project}_orchestration"  # Compose names it after the project
        self.port = free_port()
        settings = {
            "COMPOSE_PROJECT_NAME": self.project,
            "ORCHESTRATOR_DASHBOARD_PORT": str(self.port),
            "ORCHESTRATOR_MAX_WORKERS": "2",
            "REPO_URL": "/orchestration/remote.git",
        }
        inherited = {k: v for k, v in os.environ.items() if k not in ("ORCHESTRATOR_VOLUME",)}
        self.env = {
            **inherited,
            "ORCHESTRATOR_WORKER_IMAGE": WORKER_IMAGE,
            "ORCHESTRATOR_MANAGER_IMAGE": MANAGER_IMAGE,
            "ORCHESTRATOR_DASHBOARD_TOKEN": TOKEN,
        }
        self.env_file: Path | None = None
        if env_file is None:
            self.env.update(settings)
        else:
            self.env_file = tmp_path / f"{self.project}.env"
            lines = [f"{key}={value}" for key, value in {**settings, **env_file}.items()]
            self.env_file.write_text("# a project of the service\n" + "\n".join(lines) + "\n")
        self.remote = make_remote(tmp_path)

    def compose(self, *args: str, timeout: float = 300, check: bool = True,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        project = ["--env-file", str(self.env_file)] if self.env_file else ["-p", self.project]
        command = ["docker-compose", *project, "-f", str(REPO / "compose.yaml"),
                   "-f", str(REPO / "compose.simulate.yaml"), *args]
        done = subprocess.run(command, env=self.env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, input=stdin)
        if check:
            assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def orchestrator(self, *args: str, check: bool = True, timeout: float = 300,
                     stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", "dispatcher", "orchestrator", *args, check=check,
                            timeout=timeout, stdin=stdin)

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def inspect(self, service: str) -> dict:
        out = subprocess.run(["docker", "inspect", self.container(service)], capture_output=True,
                             text=True, check=True).stdout
        return json.loads(out)[0]

    def result(self, task_id: str) -> dict:
        done = self.orchestrator("result", task_id, "--json", check=False)
        assert done.returncode in (0, 1), done.stdout + done.stderr
        return json.loads(done.stdout)

    def down(self) -> None:
        # the workers the dispatcher started are not the project's: remove them first, or the
        # volume stays in use
        label = f"orchestrator.root=volume:{self.volume}"
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        self.compose("down", "-v", "--remove-orphans", "-t", "5", check=False, timeout=180)


def wait_until(condition, timeout: float, what: str, step: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def require_compose(docker_client) -> None:
    require(shutil.which("docker-compose") is not None,
            "docker-compose is missing; apt-get install docker-compose")
    for image in (WORKER_IMAGE, MANAGER_IMAGE):
        try:
            docker_client.images.get(image)
        except Exception:
            require(False, f"the {image} image is missing; build it with scripts/build-images.sh --offline")


@pytest.fixture
def stack(docker_client, tmp_path: Path) -> Iterator[Stack]:
    require_compose(docker_client)
    stack = Stack(tmp_path)
    try:
        yield stack
    finally:
        stack.down()


def healthy(stack: Stack, service: str) -> bool:
    state = stack.inspect(service)["State"]
    return state.get("Running") and state.get("Health", {}).get("Status") == "healthy"


def test_the_stack_runs_tasks_as_a_service_and_a_killed_dispatcher_loses_nothing(
    stack: Stack,
) -> None:
    stack.compose("up", "-d")
    wait_until(lambda: healthy(stack, "dispatcher"), 120, "a healthy dispatcher")
    assert healthy(stack, "gateway") and healthy(stack, "dashboard")
    subprocess.run(["docker", "cp", str(stack.remote), f"{stack.container('dispatcher')}:/orchestration/"],
                   check=True, capture_output=True)

    # drop a task file (the seed's way), get a result: the real claude through the stack's gateway
    task = json.dumps({"id": "dark-mode", "prompt": "Add dark mode support"})
    stack.compose("exec", "-T", "dispatcher", "sh", "-c",
                  "cat > /orchestration/tasks/.new && mv /orchestration/tasks/.new /orchestration/tasks/dark-mode.json",
                  stdin=task)
    stack.orchestrator("wait", "dark-mode", "--timeout", "180", timeout=240)
    result = stack.result("dark-mode")
    assert result["status"] == "success" and result["files_changed"], result
    assert result["ledger_cost_usd"] > 0  # the gateway metered it

    # kill the dispatcher while a task runs: its restart policy brings it back, the worker is
    # not started twice, the task ends once
    stack.orchestrator("task", "create", "sleep 6; echo slept", "--agent", "command", "--id", "sleeper")
    wait_until(lambda: '"running"' in stack.orchestrator("status", "sleeper", "--json").stdout,
               60, "sleeper to run")
    pid = stack.inspect("dispatcher")["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: stack.inspect("dispatcher")["RestartCount"] >= 1
               and stack.inspect("dispatcher")["State"]["Running"], 60, "the dispatcher's restart")
    stack.orchestrator("wait", "sleeper", "--timeout", "120", timeout=180)
    slept = stack.result("sleeper")
    assert slept["status"] == "success" and slept["attempt"] == 1 and "slept" in slept["output"]

    # restart the whole stack: the volume keeps everything, new work still runs
    stack.compose("restart", timeout=180)
    wait_until(lambda: healthy(stack, "dispatcher"), 120, "a healthy dispatcher after restart")
    stack.orchestrator("task", "create", "echo after the restart", "--agent", "command", "--id", "after")
    stack.orchestrator("wait", "after", "--timeout", "120", timeout=180)
    assert stack.result("after")["status"] == "success"
    assert stack.result("dark-mode")["status"] == "success"

    # the dashboard shows the stack's board, and only with its token
    url = f"http://127.0.0.1:{stack.port}"
    wait_until(lambda: healthy(stack, "dashboard"), 60, "a healthy dashboard")
    assert httpx.get(f"{url}/api/board").status_code == 401
    board = httpx.get(f"{url}/api/board", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    states = {row["id"]: row["state"] for row in board["rows"]}
    assert states == {"dark-mode": "success", "sleeper": "success", "after": "success"}
    assert board["summary"]["problems"] == [] and board["summary"]["total_cost_usd"] > 0
    assert f"http://127.0.0.1:{stack.port}/" in stack.compose("logs", "dashboard").stdout


@pytest.fixture
def two_stacks(docker_client, tmp_path: Path) -> Iterator[tuple[Stack, Stack]]:
    """Two projects of the service, each from its own env file, each linking to the other."""
    require_compose(docker_client)
    stacks: list[Stack] = []
    try:
        for side, budget in (("a", "5"), ("b", "7")):
            (tmp_path / side).mkdir()
            stacks.append(Stack(tmp_path / side, env_file={"ORCHESTRATOR_BUDGET_USD": budget}))
        a, b = stacks
        for this, other in ((a, b), (b, a)):
            assert this.env_file is not None
            link = f"ORCHESTRATOR_DASHBOARD_LINKS={other.project}=http://127.0.0.1:{other.port}/\n"
            this.env_file.write_text(this.env_file.read_text() + link)
        yield a, b
    finally:
        for stack in stacks:
            stack.down()


def drop_task(stack: Stack, task_id: str, prompt: str) -> None:
    task = json.dumps({"id": task_id, "prompt": prompt})
    stack.compose("exec", "-T", "dispatcher", "sh", "-c",
                  f"cat > /orchestration/tasks/.new && mv /orchestration/tasks/.new /orchestration/tasks/{task_id}.json",
                  stdin=task)  # fmt: skip


def test_two_projects_run_side_by_side_each_on_its_own_volume_gateway_network_and_budget(
    docker_client, two_stacks: tuple[Stack, Stack]
) -> None:
    a, b = two_stacks
    for stack in (a, b):
        stack.compose("up", "-d")
    for stack in (a, b):
        wait_until(lambda s=stack: healthy(s, "dispatcher"), 180, f"{stack.project}'s dispatcher")
        subprocess.run(["docker", "cp", str(stack.remote), f"{stack.container('dispatcher')}:/orchestration/"],
                       check=True, capture_output=True)  # fmt: skip
    # ids of their own: worker containers are named worker-<id> engine-wide (until scoped names)
    drop_task(a, "dark-mode-a", "Add dark mode support")
    drop_task(b, "dark-mode-b", "Add dark mode support")
    for stack, task_id in ((a, "dark-mode-a"), (b, "dark-mode-b")):
        stack.orchestrator("wait", task_id, "--timeout", "240", timeout=300)
        result = stack.result(task_id)
        assert result["status"] == "success" and result["files_changed"], result
        assert result["ledger_cost_usd"] > 0  # its own gateway metered it

    # neither sees the other's files: each volume holds its own task alone
    for stack, own, other in ((a, "dark-mode-a", "dark-mode-b"), (b, "dark-mode-b", "dark-mode-a")):
        listed = stack.orchestrator("status", "--json").stdout
        assert [row["id"] for row in json.loads(listed)["tasks"]] == [own]
        files = stack.compose("exec", "-T", "dispatcher", "sh", "-c",
                              "ls /orchestration/tasks /orchestration/results").stdout  # fmt: skip
        assert own in files and other not in files
        assert stack.orchestrator("result", other, check=False).returncode != 0
        mounts = [m.get("Name") for m in stack.inspect("dispatcher")["Mounts"]]
        assert stack.volume in mounts
        label = {"label": [f"orchestrator.root=volume:{stack.volume}", "orchestrator.role=worker"]}
        workers = docker_client.containers.list(all=True, filters=label)
        assert workers and all(
            any(m.get("Name") == stack.volume for m in w.attrs["Mounts"]) for w in workers
        )

    # its own gateway, network and budget; its dashboard names it and links to the other
    gateways = {a.container("gateway"), b.container("gateway")}
    assert len(gateways) == 2 and "" not in gateways
    networks = [set(s.inspect("dispatcher")["NetworkSettings"]["Networks"]) for s in (a, b)]
    assert networks[0] == {f"{a.project}_default"} and networks[1] == {f"{b.project}_default"}
    for stack, other, budget in ((a, b, 5.0), (b, a, 7.0)):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        url = f"http://127.0.0.1:{stack.port}"
        wait_until(lambda s=stack: healthy(s, "dashboard"), 60, f"{stack.project}'s dashboard")
        info = httpx.get(f"{url}/api/project", headers=headers).json()
        assert info == {"project": stack.project,
                        "links": [{"name": other.project, "url": f"http://127.0.0.1:{other.port}/"}]}  # fmt: skip
        board = httpx.get(f"{url}/api/board", headers=headers).json()
        assert [row["id"] for row in board["rows"]] == [f"dark-mode-{'a' if stack is a else 'b'}"]
        assert board["summary"]["fleet_budget"]["usd"] == budget
        assert f"(project {stack.project})" in stack.compose("logs", "dashboard").stdout
