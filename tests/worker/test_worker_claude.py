"""The worker running the real ``claude`` binary on the host, through the real gateway, against
the scripted model, which accepts only the key the gateway holds: the worker never has it."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from manager.git.mirror import ensure_mirror
from orchestration_protocol import Layout, Result, Task, read_model, write_task
from orchestration_protocol.claude_cli import ClaudeNotFound, find_claude
from orchestration_protocol.gateway import read_ledger
from scripted_model.claude_binary import TEST_API_KEY
from scripted_model.scenario import load_scenarios
from scripted_model.server import ScriptedModelServer
from tests.conftest import require
from tests.gateway_helpers import GatewayProcess, write_secret
from tests.gitrepo import make_remote, show
from worker.cli import RET_OK, main


@pytest.fixture(scope="module")
def model_server():
    try:
        find_claude()
    except ClaudeNotFound as error:
        require(False, str(error))
    with ScriptedModelServer(load_scenarios(), require_key=TEST_API_KEY) as server:
        yield server


@pytest.fixture
def claude_env(model_server, layout: Layout, monkeypatch, tmp_path: Path):
    """The gateway of this root, holding the key; the worker's environment has none."""
    for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    secrets = write_secret(tmp_path / "gateway-secrets", value=TEST_API_KEY)
    with GatewayProcess(layout, model_server.url, secrets) as gateway:
        yield gateway


def mirrored(layout: Layout, remote: Path) -> Path:
    """The volume's mirror of ``remote``, made as the manager makes it before spawning."""
    return ensure_mirror(layout, str(remote), credentials={})


def test_claude_writes_edits_and_runs_bash_in_the_clone(
    layout: Layout, tmp_path: Path, claude_env
) -> None:
    remote = make_remote(tmp_path)
    mirror = mirrored(layout, remote)
    write_task(
        layout, Task(id="dark-mode", prompt="Add a settings page to the app", repo=str(remote))
    )
    assert main(["--task", "dark-mode", "--root", str(layout.root)]) == RET_OK
    result = read_model(layout.result_file("dark-mode"), Result)
    assert result.status == "success", result.error
    assert result.num_turns == 4 and result.cost_usd and result.usage["output_tokens"] > 0
    ledger = read_ledger(layout, "dark-mode")
    assert len(ledger) == 4 and result.cost_usd == pytest.approx(sum(e.cost_usd for e in ledger))
    [changed] = result.files_changed
    assert changed.startswith("simulated-") and changed.endswith(".md")
    text = show(mirror, "orchestrator/dark-mode", changed)
    assert "Prompt: Add a settings page to the app" in text and "Status: done" in text
    assert f"?? {changed}" in result.output  # the Bash tool really ran git status in the clone
    transcript = (layout.artifacts_dir("dark-mode") / "transcript.jsonl").read_text()
    assert '"type":"result"' in transcript.replace(" ", "")
    log = layout.log_file("dark-mode").read_text()
    assert (
        "[tool] Write:" in log
        and "[tool] Edit:" in log
        and "[tool] Bash: git status --short" in log
    )
    assert TEST_API_KEY not in log + transcript + layout.result_file("dark-mode").read_text()
    assert "x-api-key" not in transcript and "orc-" not in log  # the caller token is masked too


def test_api_failure_is_a_failed_result_naming_it(
    layout: Layout, tmp_path: Path, claude_env, monkeypatch
) -> None:
    monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "0")
    remote = make_remote(tmp_path)
    mirrored(layout, remote)
    write_task(layout, Task(id="t1", prompt="reply: x simulate auth error", repo=str(remote)))
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    result = read_model(layout.result_file("t1"), Result)
    assert result.status == "failed"
    assert "claude" in result.error


def test_an_unreachable_model_endpoint_is_a_failed_result_naming_it_not_a_hang(
    layout: Layout, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    remote = make_remote(tmp_path)
    mirrored(layout, remote)
    secrets = write_secret(tmp_path / "gateway-secrets", value=TEST_API_KEY)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nobody listens on
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    write_task(layout, Task(id="t1", prompt="Add a settings page to the app", repo=str(remote)))
    with GatewayProcess(layout, url, secrets):
        started = time.monotonic()
        assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    closed.close()
    result = read_model(layout.result_file("t1"), Result)
    assert result.status == "failed"
    assert "cannot be reached" in result.error and url in result.error
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("mode", ["bedrock", "vertex"])
def test_a_worker_on_bedrock_or_vertex_goes_through_the_gateway_holding_nothing(
    layout: Layout, tmp_path: Path, monkeypatch, mode: str
) -> None:
    from tests.gateway.test_gateway_bedrock import (
        ACCESS_KEY,
        AWS_KEY,
        REGION,
        SECRET_KEY,
        VERTEX_TOKEN,
    )

    for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if mode == "bedrock":
        monkeypatch.setenv("CLAUDE_CODE_USE_BEDROCK", "1")
        monkeypatch.setenv("AWS_REGION", REGION)
    else:
        monkeypatch.setenv("CLAUDE_CODE_USE_VERTEX", "1")
        monkeypatch.setenv("CLOUD_ML_REGION", "us-east5")
        monkeypatch.setenv("ANTHROPIC_VERTEX_PROJECT_ID", "test-project")
    secrets = tmp_path / "gateway-secrets"
    for name, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                        ("AWS_REGION", REGION), ("GOOGLE_OAUTH_ACCESS_TOKEN", VERTEX_TOKEN)):
        write_secret(secrets, name, value)
    remote = make_remote(tmp_path)
    mirror = mirrored(layout, remote)
    write_task(layout, Task(id="cloud", prompt="Add a settings page to the app", repo=str(remote)))
    with ScriptedModelServer(load_scenarios(), aws_key=AWS_KEY, vertex_token=VERTEX_TOKEN) as model:
        args = ["--bedrock-upstream", model.url, "--vertex-upstream", model.url]
        with GatewayProcess(layout, "http://127.0.0.1:9", secrets, args) as gateway:
            assert main(["--task", "cloud", "--root", str(layout.root)]) == RET_OK
    result = read_model(layout.result_file("cloud"), Result)
    assert result.status == "success", result.error
    assert show(mirror, "orchestrator/cloud", result.files_changed[0])
    log = layout.log_file("cloud").read_text() + gateway.stderr
    assert SECRET_KEY not in log and VERTEX_TOKEN not in log and "/caller/orc-" not in log
    entries = [json.loads(line) for line in (layout.root / "ledger" / "cloud.jsonl").read_text().splitlines()]
    assert entries and all(entry["outcome"] == "ok" for entry in entries)
