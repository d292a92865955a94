"""The interactive manager end to end, as a person would watch it: tmux runs the manager, the
test types a request, the scripted manager (manager/scenarios/manager-*.json) creates
three tasks through the real ``orchestrator`` CLI, spawns three workers, waits and merges, and
the test reads the outcome from the bare repository, the results and the screen.

Two ways to run the manager:

- ``run.sh``: ``./run.sh --simulate --repo <bare repo>`` on a real engine, the manager and the
  workers in containers (markers ``docker``, ``e2e``: needs the built images);
- ``host``: ``entrypoint.sh`` straight on this machine with the local backend, workers as
  processes (needs tmux and the ``claude`` binary from the dev extras; no Docker).

Watch one live while it runs: ``tmux -L <session> attach`` (``ls /tmp/tmux-$UID/`` lists the
sessions, named ``e2e-*``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require
from tests.gitrepo import branches, show

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
READY = "auto mode on"
"""The status line of interactive Claude Code once it takes input."""
EXITED = "[the manager exited with status"
START_TIMEOUT_S = 90
RUN_TIMEOUT_S = 300


@dataclass
class Scenario:
    """A request, the tasks the scripted manager makes of it, and what must come out."""

    request: str
    tasks: list[str]
    merged: list[str]
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    on_screen: list[str] = field(default_factory=list)
    done_marker: str = ""
    integration: Callable[[Path], None] = lambda remote: None


def dark_mode_is_integrated(remote: Path) -> None:
    ref = "orchestrator/integration"
    assert 'data-theme="dark"' in show(remote, ref, "app/styles.css")
    assert "theme: 'system'" in show(remote, ref, "app/settings.js")
    assert "export function applyTheme" in show(remote, ref, "app/theme-toggle.js")


def blue_and_docs_are_integrated(remote: Path) -> None:
    ref = "orchestrator/integration"
    styles = show(remote, ref, "app/styles.css")
    assert "--accent: #2563eb;" in styles and "#16a34a" not in styles
    assert "`--accent` variable" in show(remote, ref, "README.md")
    assert "#16a34a" in show(remote, "orchestrator/accent-green", "app/styles.css")


def validation_is_integrated(remote: Path) -> None:
    ref = "orchestrator/integration"
    code = show(remote, ref, "app/input-validation-login.js")
    assert "Add input validation to the login form" in code and "export function" in code
    assert "test(" in show(remote, ref, "tests/input-validation-login.test.js")
    assert "--accent: #0066cc;" in show(remote, ref, "app/styles.css")  # the app is still there


ANY_REQUEST = Scenario(
    request="Add input validation to the login form and write tests for it",
    tasks=["input-validation-login", "input-validation-tests"],
    merged=["input-validation-login", "input-validation-tests"],
    on_screen=[
        "input-validation-login  Add input validation to the login form",
        "predicted conflicts: none",
        "It predicts no merge conflicts",
        "input-validation-login: success, merged (app/input-validation-login.js)",
        "input-validation-tests: success, merged (tests/input-validation-login.test.js)",
        "is ready for review on branch orchestrator/integration",
        "The integration branch was pushed to origin/orchestrator/integration.",
    ],
    done_marker="across 2 workers.",
    integration=validation_is_integrated,
)
"""Not the dark-mode sentence: the scripted manager plans it (program ``manage``), and the
scripted planner derives the tasks from the request and the demo app's files."""

SECOND_REQUEST = "Add a footer to the page"
SECOND_TASKS = ["footer-page", "footer-page-tests"]


SCENARIOS = {
    "dark-mode": Scenario(
        request="Add dark mode support to the app",
        tasks=["dark-theme", "dark-settings", "dark-toggle"],
        merged=["dark-theme", "dark-settings", "dark-toggle"],
        on_screen=[
            "Dark mode support is merged on branch orchestrator/integration;",
            "VERDICT: checks passed on orchestrator/integration",
            "dark-theme: merged (app/styles.css)",
            "dark-settings: merged (app/settings.js)",
            "dark-toggle: merged (app/theme-toggle.js)",
            "pushed to origin/orchestrator/integration",
        ],
        done_marker="Review it with: git diff main...orchestrator/integration",
        integration=dark_mode_is_integrated,
    ),
    "conflict": Scenario(
        request="Try a blue and a green accent color for the app",
        tasks=["accent-blue", "accent-green", "accent-docs"],
        merged=["accent-blue", "accent-docs"],
        conflicts={"accent-green": ["app/styles.css"]},
        on_screen=[
            "Done, with one conflict.",
            "accent-blue: merged (app/styles.css)",
            "accent-docs: merged (README.md)",
            "accent-green: conflict (conflict in app/styles.css)",
            "pushed to origin/orchestrator/integration",
        ],
        done_marker="Compare the alternatives with:",
        integration=blue_and_docs_are_integrated,
    ),
}


class TmuxSession:
    """One detached tmux session running a command, read through capture-pane.

    It runs on its own tmux server (``tmux -L <name>``): a session made on a server that already
    runs gets that server's environment, not ours."""

    def __init__(self, name: str, command: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.name = name
        shown = ["bash", "-c", f'"$@"; echo "{EXITED} $?"; sleep 3600', "manager", *command]
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-s", name, "-x", "200", "-y", "60", "--", *shown],
            cwd=cwd,
            env=env,
            check=True,
        )

    @property
    def tmux(self) -> list[str]:
        return ["tmux", "-L", self.name]

    def screen(self) -> str:
        """Everything shown so far (scrollback included), wrapped lines joined."""
        done = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-J", "-S", "-10000", "-t", self.name],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout

    def type(self, text: str) -> None:
        """Type ``text`` and submit it. Enter is pressed three times, a second apart: on a
        loaded machine the first can arrive as part of the paste and be taken as a newline,
        and Enter on an empty input does nothing."""
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, "-l", text], check=True)
        time.sleep(0.3)
        for _ in range(3):
            subprocess.run([*self.tmux, "send-keys", "-t", self.name, "Enter"], check=True)
            time.sleep(1.0)

    def wait_for(self, text: str, timeout: float) -> float:
        """Seconds until ``text`` is on screen; fails with the screen when it never is."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            screen = self.screen()
            if text in screen:
                return time.monotonic() - start
            if EXITED in screen:
                pytest.fail(f"the manager exited before {text!r} appeared; the screen:\n{screen}")
            time.sleep(0.1)
        pytest.fail(f"{text!r} never appeared within {timeout:g}s; the screen:\n{self.screen()}")

    def kill(self) -> None:
        socket = subprocess.run(
            [*self.tmux, "display-message", "-p", "#{socket_path}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, check=False)
        if socket:
            Path(socket).unlink(missing_ok=True)


@dataclass
class Manager:
    """A running manager and how to read the orchestration volume it works on."""

    tmux: TmuxSession
    remote: Path
    read_result: Callable[[str], dict]


@pytest.fixture
def demo_remote(tmp_path: Path) -> Path:
    """The demo app as ``run.sh --simulate`` makes it when no --repo is given."""
    os.chmod(tmp_path, 0o755)
    remote = tmp_path / "demo-app.git"
    subprocess.run([str(REPO_ROOT / "scripts" / "demo-repo.sh"), str(remote)], check=True)
    return remote


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without model credentials, plus ``extra``."""
    dropped = ("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDE_CONFIG_DIR", "AWS_", "ORCHESTRATOR_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.pop("TMUX", None)
    env.update(TERM="xterm-256color", **extra)
    return env


def require_tmux() -> None:
    require(shutil.which("tmux") is not None, "tmux is not installed (apt-get install tmux)")


def remove_container_and_volume(name: str, volume: str) -> None:
    """Remove the manager (``--rm`` may be removing it already) and then its volume."""
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        gone = subprocess.run(["docker", "container", "inspect", name], capture_output=True)
        if gone.returncode != 0:
            break
        time.sleep(0.2)
    subprocess.run(["docker", "volume", "rm", volume], capture_output=True, check=False)


@pytest.fixture
def manager_in_docker(docker_client, demo_remote: Path, tmp_path: Path) -> Iterator[Manager]:
    """``./run.sh --simulate --repo <bare repo>`` in tmux, on its own volume."""
    from docker.errors import ImageNotFound

    require_tmux()
    images = {
        "ORCHESTRATOR_MANAGER_IMAGE": os.environ.get("ORCHESTRATOR_MANAGER_IMAGE")
        or "claude-orchestrator",
        "ORCHESTRATOR_WORKER_IMAGE": os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker",
    }
    for image in images.values():
        try:
            docker_client.images.get(image)
        except ImageNotFound:
            require(False, f"image {image} is not built; run scripts/build-images.sh --offline")
    token = secrets.token_hex(3)
    volume, name = f"e2e-{token}", f"orchestrator-manager-e2e-{token}"
    command = [str(REPO_ROOT / "run.sh"), "--simulate", "--repo", str(demo_remote)]
    command += ["--volume", volume, "--name", name]
    tmux = TmuxSession(
        f"e2e-{token}", command, cwd=tmp_path, env=clean_env(HOME=str(tmp_path), **images)
    )

    def read_result(task_id: str) -> dict:
        done = subprocess.run(
            ["docker", "exec", name, "orchestrator", "result", task_id, "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        return json.loads(done.stdout)

    try:
        yield Manager(tmux, demo_remote, read_result)
    finally:
        tmux.kill()
        # Its workers and gateway only: the scripted model container is shared by every
        # simulated run.
        for role in ("worker", "gateway"):
            labels = [f"orchestrator.root=volume:{volume}", f"orchestrator.role={role}"]
            for container in docker_client.containers.list(all=True, filters={"label": labels}):
                container.remove(force=True)
        remove_container_and_volume(name, volume)


@pytest.fixture
def manager_on_host(demo_remote: Path, tmp_path: Path) -> Iterator[Manager]:
    """``entrypoint.sh`` on this machine in tmux, with the local backend."""
    from scripted_model import ClaudeNotFound, find_claude

    require_tmux()
    try:
        claude = find_claude()
    except ClaudeNotFound as error:
        require(False, str(error))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(claude)
    root = tmp_path / "orchestration"
    venv_bin = Path(sys.executable).parent
    env = clean_env(
        HOME=str(tmp_path / "home"),
        PATH=f"{bin_dir}:{venv_bin}:{os.environ['PATH']}",
        REPO_URL=str(demo_remote),
        REPO_BRANCH="main",
        ORCHESTRATION_DIR=str(root),
        ORCHESTRATOR_BACKEND="local",
        ORCHESTRATOR_SIMULATE="1",
        ORCHESTRATOR_WORKSPACE=str(tmp_path / "workspace"),
        ORCHESTRATOR_STATE_DIR=str(tmp_path / "state"),
        ORCHESTRATOR_SECRETS_DIR=str(tmp_path / "no-secrets"),
        ORCHESTRATOR_SYSTEM_PROMPT=str(REPO_ROOT / "system-prompt.md"),
        ORCHESTRATOR_MANAGER_SCENARIOS=str(REPO_ROOT / "manager" / "scenarios"),
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    tmux = TmuxSession(
        f"e2e-host-{secrets.token_hex(3)}",
        [str(REPO_ROOT / "entrypoint.sh")],
        cwd=tmp_path,
        env=env,
    )

    def read_result(task_id: str) -> dict:
        return json.loads((root / "results" / f"{task_id}.json").read_text())

    try:
        yield Manager(tmux, demo_remote, read_result)
    finally:
        tmux.kill()
        subprocess.run(
            ["orchestrator", "cleanup", "--all", "--simulation"],
            env=env,
            capture_output=True,
            check=False,
        )


def converse(manager: Manager, scenario: Scenario) -> str:
    """Type the request once the prompt is up; return the screen once the summary is shown."""
    manager.tmux.wait_for(READY, START_TIMEOUT_S)
    manager.tmux.type(scenario.request)
    manager.tmux.wait_for(scenario.done_marker, RUN_TIMEOUT_S)
    return manager.tmux.screen()


def check_outcome(manager: Manager, scenario: Scenario, screen: str) -> None:
    remote = manager.remote
    (remote.parent / "screen.txt").write_text(screen)  # kept with pytest's tmp dirs, to look at
    for text in scenario.on_screen:
        assert text in screen, f"{text!r} is not on the screen:\n{screen}"
    task_branches = {f"orchestrator/{task_id}" for task_id in scenario.tasks}
    assert task_branches | {"orchestrator/integration"} <= set(branches(remote))
    for task_id in scenario.tasks:
        result = manager.read_result(task_id)
        assert result["status"] == "success", result
        assert result["pushed"] and result["branch"] == f"orchestrator/{task_id}"
        assert result["cost_usd"] > 0 and result["files_changed"]
    scenario.integration(remote)
    for task_id, files in scenario.conflicts.items():
        assert task_id not in scenario.merged
        for path in files:
            assert f"{task_id}: conflict (conflict in {path})" in screen


@pytest.mark.parametrize("scenario_name", list(SCENARIOS))
def test_manager_on_the_host(manager_on_host: Manager, scenario_name: str) -> None:
    scenario = SCENARIOS[scenario_name]
    check_outcome(manager_on_host, scenario, converse(manager_on_host, scenario))


@pytest.mark.docker
@pytest.mark.parametrize("scenario_name", list(SCENARIOS))
def test_manager_through_run_sh(manager_in_docker: Manager, scenario_name: str) -> None:
    scenario = SCENARIOS[scenario_name]
    check_outcome(manager_in_docker, scenario, converse(manager_in_docker, scenario))


def converse_twice(manager: Manager) -> None:
    """Any request, then a second one in the same session: new tasks, not the first's."""
    screen = converse(manager, ANY_REQUEST)
    check_outcome(manager, ANY_REQUEST, screen)
    manager.tmux.type(SECOND_REQUEST)
    manager.tmux.wait_for(f'Done: "{SECOND_REQUEST}" is ready for review', RUN_TIMEOUT_S)
    manager.tmux.wait_for("Review it with:", 10)
    screen = manager.tmux.screen()
    (manager.remote.parent / "screen-2.txt").write_text(screen)
    for task_id in SECOND_TASKS:
        assert f"{task_id}: success, merged" in screen, screen
        result = manager.read_result(task_id)
        assert result["status"] == "success" and result["files_changed"], result
    assert "footer" in show(manager.remote, "orchestrator/integration", "app/footer-page.js").lower()
    # the first request's work is still merged
    validation_is_integrated(manager.remote)


def test_any_request_on_the_host(manager_on_host: Manager) -> None:
    converse_twice(manager_on_host)


@pytest.mark.docker
def test_any_request_through_run_sh(manager_in_docker: Manager) -> None:
    converse_twice(manager_in_docker)
