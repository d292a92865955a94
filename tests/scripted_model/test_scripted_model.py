"""The scripted model endpoint: scenario choice, request reading, the wire format it emits, its
CLI, and the real ``claude`` binary running end to end against it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from scripted_model import (
    NO_SCENARIO,
    SCENARIOS_ENV,
    ClaudeNotFound,
    Scenario,
    ScenarioBook,
    ScenarioFileError,
    ScriptedModelServer,
    claude_env,
    find_claude,
    load_scenarios,
    prepare_claude_home,
    read_conversation,
    read_scenario_file,
)
from scripted_model.scenario import fill_placeholders
from scripted_model.server import RET_BAD_SCENARIO, RET_OK, main
from tests.conftest import require
from tests.gitrepo import IDENTITY, git

CWD = "/work/some-repo"
REMINDER = "<system-reminder>\nAs you answer the user's questions ...\n</system-reminder>"


# ---------------------------------------------------------------- requests as Claude Code sends them


def prompt_message(text: str) -> dict[str, Any]:
    """A prompt as Claude Code 2.1.330 sends it: reminders first, then the prompt's text."""
    blocks = [{"type": "text", "text": REMINDER}, {"type": "text", "text": text}]
    return {"role": "user", "content": blocks}


def environment_message(cwd: str = CWD) -> dict[str, Any]:
    """The mid-conversation system message that states the working directory."""
    text = f"# Environment\n - Primary working directory: {cwd}\n - Is a git repository: true\n"
    return {"role": "system", "content": text}


def tool_round(tool: str, result: str) -> list[dict[str, Any]]:
    """One assistant reply calling ``tool`` and the user message carrying its result."""
    use = {"type": "tool_use", "id": f"toolu_{tool}", "name": tool, "input": {}}
    answer = {"type": "tool_result", "tool_use_id": f"toolu_{tool}", "content": result}
    return [
        {"role": "assistant", "content": [{"type": "text", "text": "Working."}, use]},
        {"role": "user", "content": [answer]},
    ]


def claude_body(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A main-conversation ``/v1/messages`` body (tools present, streamed)."""
    return {
        "model": "claude-opus-5-5",
        "max_tokens": 128000,
        "stream": True,
        "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI."}],
        "tools": [{"name": n, "input_schema": {"type": "object"}} for n in ("Bash", "Write")],
        "messages": messages,
        **extra,
    }


def post(url: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
    """POST JSON; the status, headers (lower-case names) and raw body of the answer."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=20)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        connection.close()


def get(url: str, path: str) -> tuple[int, Any]:
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=20)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Server-sent events as ``(event, data)`` pairs."""
    events = []
    for chunk in raw.decode().strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def assemble(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The message a client rebuilds from a stream; checks the event order on the way."""
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    message = events[0][1]["message"]
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert data["index"] == len(blocks)
            blocks.append(dict(data["content_block"]))
        elif name == "content_block_delta":
            delta, block = data["delta"], blocks[data["index"]]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                assert delta["type"] == "input_json_delta" and block["type"] == "tool_use"
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        else:
            assert name == "content_block_stop" and data["index"] == len(blocks) - 1
    for index, text in partial.items():
        blocks[index]["input"] = json.loads(text)
    final = events[-2][1]
    return {**message, "content": blocks, "stop_reason": final["delta"]["stop_reason"],
            "usage": final["usage"]}


@pytest.fixture
def server():
    """The endpoint with the built-in scenarios only."""
    with ScriptedModelServer(load_scenarios(use_env=False)) as running:
        yield running


def ask(server: ScriptedModelServer, messages: list[dict[str, Any]], **extra: Any):
    status, _, raw = post(server.url, "/v1/messages?beta=true", claude_body(messages, **extra))
    assert status == 200, raw
    return assemble(parse_sse(raw)) if extra.get("stream", True) else json.loads(raw)


# ---------------------------------------------------------------- scenarios


def test_substring_match_ignores_case_and_regex_groups_become_placeholders() -> None:
    assert Scenario(name="a", match="Dark Mode").match_prompt("add dark mode please") == {}
    assert Scenario(name="a", match="dark mode").match_prompt("add light mode") is None
    sleep = Scenario(name="s", match=r"sleep (?P<seconds>\d+)", regex=True)
    assert sleep.match_prompt("please sleep 12 now") == {"seconds": "12"}
    filled = fill_placeholders({"cmd": ["sleep {seconds}", "{unknown} {x"], "n": 3}, {"seconds": "12"})
    assert filled == {"cmd": ["sleep 12", "{unknown} {x"], "n": 3}


def test_specific_scenarios_win_over_catch_alls_and_no_scenario_names_the_prompt() -> None:
    catch_all, specific = Scenario(name="all"), Scenario(name="bench", match="sleep")
    book = ScenarioBook([catch_all, specific])
    assert book.select("sleep 3")[0] is specific
    assert book.select("anything else")[0] is catch_all
    assert ScenarioBook([specific]).select("hello")[0] is NO_SCENARIO


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ('{"scenarios": [{"name": "x", "colour": "red"}]}', "scenarios.0.colour"),
        ('{"scenarios": [{"name": "x", "match": "(", "regex": true}]}', "not a valid regex"),
        ('{"scenarios": [{"name": "x", "turns": [{"text": "hi"}]}]}', "turns.0.tool_uses"),
    ],
)
def test_a_bad_scenario_file_is_named_with_its_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ScenarioFileError, match=problem) as caught:
        read_scenario_file(path)
    assert str(path) in str(caught.value)


def test_scenarios_load_from_arguments_then_env_then_builtin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("mine", "env"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "s.json").write_text(
            json.dumps({"scenarios": [{"name": name, "match": "sleep"}]})
        )
    monkeypatch.setenv(SCENARIOS_ENV, str(tmp_path / "env"))
    book = load_scenarios([tmp_path / "mine"])
    assert book.names()[:2] == ["mine", "env"]
    assert {"default", "sleep", "api-error", "auth-error", "reply"} <= set(book.names())
    assert book.select("sleep 2")[0].name == "mine"
    assert load_scenarios(builtin=False, use_env=False).names() == []


# ---------------------------------------------------------------- reading Claude Code's requests


def test_a_request_yields_prompt_turn_cwd_and_the_last_tool_result() -> None:
    messages = [prompt_message("Add a README"), environment_message(), *tool_round("Write", "ok")]
    messages += tool_round("Bash", "?? README.md")
    conversation = read_conversation(claude_body(messages), {"X-Claude-Code-Session-Id": "s-1"})
    assert conversation.prompt == "Add a README"
    assert (conversation.turn, conversation.cwd) == (2, CWD)
    assert conversation.last_tool_result == "?? README.md"
    assert conversation.session_id == "s-1" and conversation.side_kind is None


def test_a_new_prompt_in_an_interactive_session_starts_its_turns_from_zero() -> None:
    messages = [prompt_message("first"), environment_message(), *tool_round("Write", "ok")]
    messages += [{"role": "assistant", "content": [{"type": "text", "text": "Done."}]}]
    messages += [{"role": "user", "content": [{"type": "text", "text": "second"}]}]
    conversation = read_conversation(claude_body(messages), {})
    assert (conversation.prompt, conversation.turn) == ("second", 0)


# ---------------------------------------------------------------- the wire format


def test_a_streamed_turn_has_the_messages_api_shape_and_fills_cwd(server) -> None:
    messages = [prompt_message("Add a README"), environment_message()]
    message = ask(server, messages)
    assert message["stop_reason"] == "tool_use" and message["role"] == "assistant"
    text, write = message["content"]
    assert text["type"] == "text" and write["type"] == "tool_use" and write["name"] == "Write"
    assert write["input"]["file_path"].startswith(f"{CWD}/simulated-")
    assert "Prompt: Add a README" in write["input"]["content"]
    assert message["usage"]["output_tokens"] > 0 and message["model"] == "claude-opus-5-5"
    [record] = server.turn_requests()
    assert (record.scenario, record.turn, record.tool_names) == ("default", 0, ["Write"])


def test_turns_follow_the_conversation_and_end_with_the_final_text(server) -> None:
    messages = [prompt_message("Add a README"), environment_message()]
    tools = []
    for tool, result in [("Write", "created"), ("Edit", "updated"), ("Bash", "?? x.md")]:
        reply = ask(server, messages)
        tools += [b["name"] for b in reply["content"] if b["type"] == "tool_use"]
        messages += tool_round(tool, result)
    final = ask(server, messages)
    assert tools == ["Write", "Edit", "Bash"]
    assert final["stop_reason"] == "end_turn" and "?? x.md" in final["content"][0]["text"]


def test_a_non_streamed_request_gets_a_whole_message(server) -> None:
    message = ask(server, [prompt_message("reply: hello there")], stream=False)
    assert message["type"] == "message" and message["stop_reason"] == "end_turn"
    assert message["content"] == [{"type": "text", "text": "hello there"}]


def test_an_error_scenario_answers_anthropic_error_json_without_retry(server) -> None:
    body = claude_body([prompt_message("please simulate api error")])
    status, headers, raw = post(server.url, "/v1/messages?beta=true", body)
    error = json.loads(raw)
    assert status == 500 and headers["x-should-retry"] == "false"
    assert error["type"] == "error" and error["error"]["type"] == "api_error"


def test_errors_at_a_later_turn_and_delays_are_scripted() -> None:
    scenario = Scenario.model_validate({
        "name": "slow-then-broken",
        "turns": [{"delay_s": 0.3, "tool_uses": [{"name": "Bash", "input": {"command": "ls"}}]}],
        "error": {"status": 529, "type": "overloaded_error", "at_turn": 1, "retryable": True},
    })
    with ScriptedModelServer([scenario]) as server:
        started = time.monotonic()
        assert ask(server, [prompt_message("go")])["stop_reason"] == "tool_use"
        assert time.monotonic() - started >= 0.3
        body = claude_body([prompt_message("go"), *tool_round("Bash", "x")])
        status, headers, _ = post(server.url, "/v1/messages", body)
        assert (status, headers["x-should-retry"]) == (529, "true")


@pytest.mark.parametrize(
    ("extra", "prompt", "kind", "answer"),
    [
        ({"tools": [], "stream": False, "max_tokens": 1}, "quota", "quota_check", "ok"),
        (
            {"tools": [], "output_config": {"format": {"type": "json_schema", "schema": {
                "type": "object", "properties": {"title": {"type": "string"}},
                "required": ["title"]}}}},
            "Generate a title for this session", "tool_free", '{"title": "Scripted session"}',
        ),
        ({"stop_sequences": ["</block>"]}, "Classify this action", "classifier", "<block>no</block>"),
        ({"stop_sequences": ["</severity>"]}, "Grade it", "classifier", "<severity>0</severity>"),
        ({}, "The user stepped away and is coming back. Recap", "away_summary", "Scripted session."),
    ],
)
def test_side_requests_get_a_harmless_answer_and_leave_the_scenario_alone(
    server, extra: dict[str, Any], prompt: str, kind: str, answer: str
) -> None:
    message = ask(server, [prompt_message(prompt)], **extra)
    assert message["content"] == [{"type": "text", "text": answer}]
    assert message["stop_reason"] == "end_turn"
    [record] = server.requests
    assert (record.kind, record.scenario) == ("side", f"side:{kind}")
    assert server.turn_requests() == []


def test_count_tokens_models_health_and_unknown_routes(server) -> None:
    status, _, raw = post(server.url, "/v1/messages/count_tokens", claude_body([]))
    assert status == 200 and json.loads(raw)["input_tokens"] > 0
    assert get(server.url, "/v1/models")[1]["data"][0]["type"] == "model"
    assert get(server.url, "/health") == (200, {"status": "ok", "scenarios": server.book.names()})
    status, unknown = get(server.url, "/api/hello")
    assert status == 404 and unknown["error"]["type"] == "not_found_error"
    assert [r.kind for r in server.requests] == ["count_tokens", "models", "health", "unknown"]


def test_bound_to_all_interfaces_the_url_is_loopback() -> None:
    with ScriptedModelServer(ScenarioBook(), host="0.0.0.0") as server:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
        assert get(server.url, "/health")[0] == 200


# ---------------------------------------------------------------- the command line


def test_the_cli_prints_its_url_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port_file, log_file = tmp_path / "port", tmp_path / "requests.jsonl"
    command = [sys.executable, "-m", "scripted_model.server", "--port", "0",
               "--port-file", str(port_file), "--log-file", str(log_file)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            url = process.stdout.readline().strip()
            assert url == f"http://127.0.0.1:{int(port_file.read_text())}"
            ask_cli = claude_body([prompt_message("reply: via the CLI")], stream=False)
            assert post(url, "/v1/messages", ask_cli)[0] == 200
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "scenario=reply" in stderr
    assert json.loads(log_file.read_text())["prompt"] == "reply: via the CLI"


def test_the_cli_refuses_a_bad_scenario_file_in_one_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    run = subprocess.run([sys.executable, "-m", "scripted_model.server", "--scenario", str(bad)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == RET_BAD_SCENARIO
    assert run.stderr.startswith(f"scripted-model: scenario file {bad} is not valid")
    assert "Traceback" not in run.stderr


def test_help_and_schema(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    assert "ANTHROPIC_BASE_URL" in capsys.readouterr().out
    assert main(["--schema"]) == RET_OK
    schema = json.loads(capsys.readouterr().out)
    assert schema["properties"]["scenarios"]["type"] == "array"
    assert "Substring" in schema["$defs"]["Scenario"]["properties"]["match"]["description"]


# ---------------------------------------------------------------- finding and preparing claude


def test_claude_bin_wins_and_a_wrong_one_names_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "claude"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setenv("CLAUDE_BIN", str(fake))
    with pytest.raises(ClaudeNotFound, match="not an executable"):
        find_claude()
    fake.chmod(0o755)
    assert find_claude() == fake


def test_prepare_claude_home_records_what_interactive_claude_asks_for(tmp_path: Path) -> None:
    home, project = tmp_path / "home", tmp_path / "repo"
    prepare_claude_home(home, trusted_dirs=[project], api_key="sk-ant-" + "k" * 30)
    config = json.loads((home / ".claude.json").read_text())
    assert config["hasCompletedOnboarding"] is True
    assert config["customApiKeyResponses"]["approved"] == ["k" * 20]
    assert config["projects"][str(project.resolve())]["hasTrustDialogAccepted"] is True
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert settings["skipDangerousModePermissionPrompt"] is True


# ---------------------------------------------------------------- the real claude binary


@pytest.fixture
def claude_bin() -> Path:
    try:
        return find_claude()
    except ClaudeNotFound as error:
        require(False, str(error))
        raise


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    git("init", "--quiet", "--initial-branch=main", str(path))
    (path / "README.md").write_text("# demo\n")
    git("add", ".", cwd=path)
    git(*IDENTITY, "commit", "--quiet", "-m", "initial", cwd=path)
    return path


def run_claude(
    claude_bin: Path, server: ScriptedModelServer, repo: Path, prompt: str, *output: str
) -> subprocess.CompletedProcess[str]:
    env = claude_env(server.url, repo.parent / "home")
    command = [str(claude_bin), "-p", prompt, *output, "--dangerously-skip-permissions"]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120)


def test_real_claude_writes_edits_and_runs_bash(claude_bin: Path, server, repo: Path) -> None:
    run = run_claude(claude_bin, server, repo, "Add a greeting file",
                     "--output-format", "stream-json", "--verbose")
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    [result] = [e for e in events if e["type"] == "result"]
    [created] = list(repo.glob("simulated-*.md"))
    assert created.read_text() == "# Simulated change\n\nPrompt: Add a greeting file\n\nStatus: done\n"
    assert result["is_error"] is False and result["num_turns"] == 4
    assert f"?? {created.name}" in result["result"]  # Bash really ran git status in the repo
    assert result["usage"]["output_tokens"] > 0 and result["total_cost_usd"] > 0
    assert [r.tool_names for r in server.turn_requests()] == [["Write"], ["Edit"], ["Bash"], []]
    assert events[0]["type"] == "system" and events[0]["cwd"] == str(repo)


@pytest.mark.parametrize(
    ("prompt", "is_error", "text"),
    [("sleep 1", False, "Slept 1 seconds."), ("simulate api error", True, "API Error: 500")],
)
def test_real_claude_json_output_reports_success_and_api_errors(
    claude_bin: Path, server, repo: Path, prompt: str, is_error: bool, text: str
) -> None:
    started = time.monotonic()
    run = run_claude(claude_bin, server, repo, prompt, "--output-format", "json")
    result = json.loads(run.stdout)
    assert (run.returncode == 0) is not is_error, run.stderr
    assert result["is_error"] is is_error and result["result"].startswith(text)
    if not is_error:
        assert time.monotonic() - started >= 1.0 and result["num_turns"] == 2
    else:
        assert result["api_error_status"] == 500 and len(server.turn_requests()) == 1


def test_no_real_credentials_reach_claude(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "real-token")
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "real-oauth")
    env = claude_env("http://127.0.0.1:1", Path("/tmp/home"), base=dict(os.environ))
    assert "ANTHROPIC_AUTH_TOKEN" not in env and "CLAUDE_CODE_OAUTH_TOKEN" not in env
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1" and env["HOME"] == "/tmp/home"
