"""The real ``claude`` binary, holding only a caller token, runs a task through the gateway;
the scripted model upstream accepts only the real credential, so the run succeeds only if the
gateway injected it. ``claude`` speaks TCP, so a test-only relay forwards a loopback port to
``gateway/api.sock`` (the worker runtime has its own relay)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from orchestration_protocol import Layout
from orchestration_protocol.gateway import api_socket, read_ledger
from scripted_model import ClaudeNotFound, ScriptedModelServer, claude_env, find_claude
from tests.conftest import require
from tests.gateway_helpers import REAL_KEY, GatewayProcess, claim_caller, write_secret
from worker.relay import Relay


def claude_binary() -> Path:
    try:
        return find_claude()
    except ClaudeNotFound as error:
        require(False, str(error))
        raise


def test_claude_succeeds_through_the_gateway_with_only_a_caller_token(
    layout: Layout, tmp_path: Path
) -> None:
    claude = claude_binary()
    caller = claim_caller(layout, "claude-run")
    with (ScriptedModelServer(require_key=REAL_KEY) as model,
          GatewayProcess(layout, model.url, write_secret(tmp_path / "secrets")) as gateway,
          Relay(api_socket(layout)) as relay):
        env = claude_env(relay.url, home=tmp_path / "home", api_key=caller.token)
        run = subprocess.run(
            [str(claude), "-p", "reply: through the gateway", "--output-format", "json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout)
        assert result["subtype"] == "success" and result["result"] == "through the gateway"
        assert all(r.headers.get("x-api-key") == REAL_KEY for r in model.requests)
    ledger = read_ledger(layout, "claude-run")
    assert ledger and all(e.outcome == "ok" and e.cost_usd > 0 for e in ledger)
    assert caller.token not in gateway.stderr and REAL_KEY not in gateway.stderr
