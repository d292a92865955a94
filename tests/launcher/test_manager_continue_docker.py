"""``./run.sh --continue`` on the real engine: a manager session ends (``/exit``, its container
gone), and the next ``run.sh --continue`` on the same volume resumes that conversation with the
real ``claude`` (the session file was kept in the volume and restored in the new container)."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.launcher.test_interactive_manager import (
    EXITED,
    READY,
    TmuxSession,
    clean_env,
    demo_remote,
    remove_container_and_volume,
    require_tmux,
)

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]
__all__ = ["demo_remote"]


def test_continue_resumes_the_last_manager_session(docker_client, demo_remote: Path, tmp_path: Path) -> None:
    require_tmux()
    images = {
        "ORCHESTRATOR_MANAGER_IMAGE": os.environ.get("ORCHESTRATOR_MANAGER_IMAGE") or "claude-orchestrator",
        "ORCHESTRATOR_WORKER_IMAGE": os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker",
    }
    token = secrets.token_hex(3)
    volume, name = f"e2e-{token}", f"orchestrator-manager-e2e-{token}"
    base = [str(Path(__file__).resolve().parents[2] / "run.sh"), "--simulate", "--repo",
            str(demo_remote), "--volume", volume, "--name", name]
    env = clean_env(HOME=str(tmp_path), **images)
    sessions: list[TmuxSession] = []
    try:
        first = TmuxSession(f"e2e-{token}-1", base, cwd=tmp_path, env=env)
        sessions.append(first)
        first.wait_for(READY, 90)
        first.type("Hello there")
        first.wait_for("Hello", 60)
        first.type("/exit")
        first.wait_for(EXITED, 60)
        saved = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "find", "-v", f"{volume}:/v",
             images["ORCHESTRATOR_WORKER_IMAGE"], "/v/manager/sessions", "-name", "*.jsonl"],
            capture_output=True, text=True, check=False,
        ).stdout.split()
        assert len(saved) == 1, saved
        session_id = Path(saved[0]).stem
        second = TmuxSession(f"e2e-{token}-2", [*base, "--continue"], cwd=tmp_path, env=env)
        sessions.append(second)
        second.wait_for(f"resuming the manager's last session {session_id}", 90)
        second.wait_for(READY, 90)
        assert EXITED not in second.screen()
    finally:
        for session in sessions:
            session.kill()
        for role in ("worker", "gateway"):
            labels = [f"orchestrator.root=volume:{volume}", f"orchestrator.role={role}"]
            for container in docker_client.containers.list(all=True, filters={"label": labels}):
                container.remove(force=True)
        remove_container_and_volume(name, volume)
