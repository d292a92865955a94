"""The worker running the real ``claude`` binary against the scripted model, on the host."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration_protocol import Layout, Result, Task, read_model, write_task
from scripted_model.claude_binary import TEST_API_KEY, find_claude
from scripted_model.exceptions import ClaudeNotFound
from scripted_model.scenario import load_scenarios
from scripted_model.server import ScriptedModelServer
from tests.conftest import require
from tests.gitrepo import make_remote, show
from worker.cli import RET_OK, main


@pytest.fixture(scope="module")
def model_server():
    try:
        find_claude()
    except ClaudeNotFound as error:
        require(False, str(error))
    with ScriptedModelServer(load_scenarios()) as server:
        yield server


@pytest.fixture
def claude_env(model_server, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", model_server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_claude_writes_edits_and_runs_bash_in_the_clone(
    layout: Layout, tmp_path: Path, claude_env
) -> None:
    remote = make_remote(tmp_path)
    write_task(
        layout, Task(id="dark-mode", prompt="Add a settings page to the app", repo=str(remote))
    )
    assert main(["--task", "dark-mode", "--root", str(layout.root)]) == RET_OK
    result = read_model(layout.result_file("dark-mode"), Result)
    assert result.status == "success", result.error
    assert result.num_turns == 4 and result.cost_usd and result.usage["output_tokens"] > 0
    [changed] = result.files_changed
    assert changed.startswith("simulated-") and changed.endswith(".md")
    text = show(remote, "orchestrator/dark-mode", changed)
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


def test_api_failure_is_a_failed_result_naming_it(
    layout: Layout, tmp_path: Path, claude_env, monkeypatch
) -> None:
    monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "0")
    remote = make_remote(tmp_path)
    write_task(layout, Task(id="t1", prompt="reply: x simulate auth error", repo=str(remote)))
    assert main(["--task", "t1", "--root", str(layout.root)]) == RET_OK
    result = read_model(layout.result_file("t1"), Result)
    assert result.status == "failed"
    assert "claude" in result.error
