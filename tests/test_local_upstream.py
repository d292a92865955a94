"""A local model server as the upstream (issue 17, item 7): the gateway forwards to any
Anthropic-compatible endpoint named by ``ANTHROPIC_BASE_URL``, with that server's key, and a
profile's ``model`` names the model it serves. A second scripted endpoint (not the simulation's)
stands in for vLLM or Ollama; the run is not ``--simulate``: the real path, the local backend,
the real ``claude`` binary, through the real gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration_protocol import Layout
from orchestration_protocol.gateway import read_ledger
from scripted_model import ScriptedModelServer
from tests.gitrepo import make_remote
from tests.test_metrics import claude_path

LOCAL_KEY = "sk-local-model-server-key-000000000000"
VENV_BIN = Path(sys.executable).parent


def test_the_gateway_forwards_to_a_local_server_with_the_profiles_model_name(
    tmp_path: Path,
) -> None:
    path = claude_path(tmp_path)
    layout = Layout(tmp_path / "orchestration").ensure()
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("default:\n  model: qwen2.5-coder-32b\n")
    dropped = ("ANTHROPIC_", "CLAUDE_CODE_", "AWS_", "ORCHESTRATOR_SIMULATE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    with ScriptedModelServer(require_key=LOCAL_KEY) as local:
        env.update(
            PATH=path,
            REPO_URL=str(make_remote(tmp_path)),
            ORCHESTRATOR_BACKEND="local",
            ORCHESTRATOR_PROFILES=str(profiles),
            ANTHROPIC_BASE_URL=local.url,
            ANTHROPIC_API_KEY=LOCAL_KEY,  # the local server's key: the gateway holds it
        )
        done = subprocess.run(
            [str(VENV_BIN / "orchestrator"), "--root", str(layout.root), "run",
             "Add dark mode support"],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        received = local.requests
    assert done.returncode == 0, done.stdout + done.stderr
    messages = [r for r in received if r.path.startswith("/v1/messages") and r.status == 200]
    assert messages, [(r.path, r.status) for r in received]
    turns = [r for r in messages if r.path.split("?")[0] == "/v1/messages"]
    assert {r.body.get("model") for r in turns} == {"qwen2.5-coder-32b"}
    ledger = read_ledger(layout, "task-001")
    assert ledger and {entry.model for entry in ledger} == {"qwen2.5-coder-32b"}
    assert all(entry.outcome == "ok" for entry in ledger)


@pytest.fixture(autouse=True)
def _no_leftover_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
