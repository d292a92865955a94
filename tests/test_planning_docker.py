"""Planning on the real engine: the planner is an ordinary hardened worker container (no
network, no secret, the agent as uid 1000, model access through the gateway), and a greenfield
``run --plan`` merges and exports what its worker containers built."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from orchestration_protocol import Layout, plan_json_schema
from tests.conftest import docker_worker
from tests.test_manager_docker import branches, engine, env, orchestrator  # noqa: F401

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

REQUEST = "Add input validation to the login form and write tests for it"


def test_plan_runs_in_a_hardened_worker(env: dict[str, str], layout: Layout, engine) -> None:  # noqa: F811
    done = orchestrator(env, "plan", REQUEST, "-n", "3", "--simulate", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    jsonschema.validate(plan, plan_json_schema())
    assert [t["id"] for t in plan["tasks"]] == ["input-validation-login", "input-validation-tests"]
    planner = next(layout.tasks_dir.glob("plan-*.json")).stem
    result = json.loads(layout.result_file(planner).read_text())
    assert result["status"] == "success" and result["plan"] == plan and result["cost_usd"] > 0
    assert "head_commit" not in result and "branch" not in result
    container = engine.containers.get(docker_worker(layout.root, planner))
    host = container.attrs["HostConfig"]
    assert host["NetworkMode"] == "none" and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"][0]
    assert not any("docker.sock" in m.get("Source", "") for m in container.attrs["Mounts"])
    config = container.attrs["Config"]["Env"]
    assert not any(v.startswith(("ANTHROPIC_API_KEY=", "CLAUDE_CODE_OAUTH_TOKEN=")) for v in config)
    assert branches(layout, Path(env["REPO_URL"])) == ["main"]  # nothing pushed by the planner


def test_greenfield_run_in_containers(env: dict[str, str], layout: Layout, tmp_path: Path) -> None:  # noqa: F811
    env = {key: value for key, value in env.items() if key != "REPO_URL"}
    out_dir = tmp_path / "todo"
    done = orchestrator(
        env, "run", "--plan", "Build a todo list app with add/delete/complete", "-n", "3",
        "--simulate", "--output-dir", str(out_dir), timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "todo-complete: merged (src/todo-complete.js)" in done.stdout
    assert f"merged tree written to {out_dir}" in done.stdout
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*")
                   if p.is_file() and ".git" not in p.parts)
    assert files == ["index.html", "src/todo-add.js", "src/todo-complete.js",
                     "src/todo-delete.js", "src/todo-list.js"]
