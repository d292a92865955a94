"""The gateway's small parts: settings resolution, credentials, headers, usage, prices."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.credentials import OAUTH_BETA, Credential, read_credential
from gateway.errors import BadSetting
from gateway.policy import Policy
from gateway.prices import PRICES, price_of
from gateway.settings import resolve_settings
from gateway.upstream import retry_wait, with_credential
from gateway.usage import UsageMeter


def test_settings_resolve_argument_then_environment_then_default(tmp_path: Path) -> None:
    env = {"ORCHESTRATION_DIR": str(tmp_path), "GATEWAY_CONCURRENCY": "3",
           "ANTHROPIC_BASE_URL": "http://127.0.0.1:1/"}
    settings = resolve_settings(env, concurrency=5)
    assert (settings.root, settings.concurrency, settings.upstream) == (tmp_path, 5, "http://127.0.0.1:1")
    assert resolve_settings(env).concurrency == 3
    assert resolve_settings({}, root=tmp_path).max_body_bytes == 32 * 1024 * 1024
    with pytest.raises(BadSetting, match=r"bad setting concurrency \(--concurrency or GATEWAY_CONCURRENCY\)"):
        resolve_settings(env, concurrency=0)
    with pytest.raises(BadSetting, match="no orchestration root"):
        resolve_settings({})


def test_credentials_come_from_files_before_the_environment(tmp_path: Path) -> None:
    (tmp_path / "ANTHROPIC_API_KEY").write_text("from-file\n")
    assert read_credential(tmp_path, {"ANTHROPIC_API_KEY": "from-env"}).secret == "from-file"
    assert read_credential(tmp_path / "none", {"CLAUDE_CODE_OAUTH_TOKEN": "t"}).name == "CLAUDE_CODE_OAUTH_TOKEN"
    assert read_credential(tmp_path / "none", {}) is None
    assert "from-file" not in repr(read_credential(tmp_path, {}))


def forward_headers(incoming: list[tuple[str, str]], credential: Credential) -> dict[str, str]:
    return with_credential(Policy().forward_headers(incoming), credential)


def test_forwarded_headers_carry_the_credential_and_never_the_callers_auth() -> None:
    incoming = [("X-Api-Key", "orc-caller"), ("Authorization", "Bearer orc-caller"),
                ("anthropic-beta", "claude-code-20250219"), ("Connection", "keep-alive"),
                ("Proxy-Authorization", "Basic x"), ("User-Agent", "claude-cli/2")]
    api = forward_headers(incoming, Credential("ANTHROPIC_API_KEY", "sk-real"))
    assert api["x-api-key"] == "sk-real" and "authorization" not in api
    assert "connection" not in api and "proxy-authorization" not in api
    assert api["user-agent"] == "claude-cli/2"
    oauth = forward_headers(incoming, Credential("CLAUDE_CODE_OAUTH_TOKEN", "oat"))
    assert oauth["authorization"] == "Bearer oat" and "x-api-key" not in oauth
    assert oauth["anthropic-beta"] == f"claude-code-20250219,{OAUTH_BETA}"
    bearer = forward_headers(incoming, Credential("ANTHROPIC_AUTH_TOKEN", "tok"))
    assert bearer["authorization"] == "Bearer tok" and OAUTH_BETA not in bearer["anthropic-beta"]


def test_retry_wait_honours_retry_after_else_backs_off() -> None:
    assert retry_wait(httpx.Response(429, headers={"retry-after": "2.5"}), 0, 0.5) == 2.5
    assert retry_wait(httpx.Response(529), 0, 0.5) == 0.5
    assert retry_wait(httpx.Response(529), 3, 0.5) == 4.0


def test_usage_is_read_from_events_split_anywhere() -> None:
    stream = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"m",'
              b'"usage":{"input_tokens":7,"cache_read_input_tokens":100,"output_tokens":1}}}\n\n'
              b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":42}}\n\n')
    meter = UsageMeter(streamed=True)
    for i in range(0, len(stream), 7):
        meter.feed(stream[i:i + 7])
    meter.finish()
    assert meter.usage == {"input_tokens": 7, "output_tokens": 42,
                           "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0}
    plain = UsageMeter(streamed=False)
    plain.feed(b'{"type":"message","usage":{"input_tokens":3,"output_tokens":4}}')
    plain.finish()
    assert (plain.usage["input_tokens"], plain.usage["output_tokens"]) == (3, 4)


def test_prices_by_family_with_the_dearest_for_unknown_names() -> None:
    assert price_of("claude-sonnet-4-5") is PRICES["sonnet"]
    assert price_of("claude-3-5-haiku-latest") is PRICES["haiku"]
    assert price_of("claude-opus-5-5") is PRICES["opus"]
    assert price_of("something-new") is PRICES["opus"]


def _reserve_many(root: str, count: int, start: object) -> int:
    """In a process of its own: take ``count`` holds of $0.05 for task ``shared``."""
    from gateway.budgets import BudgetRefusal, Budgets
    from gateway.holds import HoldBook
    from gateway.prices import Cost
    from orchestration_protocol import Layout

    layout = Layout(Path(root))
    book = HoldBook(layout)
    budgets = Budgets(layout, book)
    start.wait()  # type: ignore[attr-defined]
    granted = 0
    for _ in range(count):
        try:
            budgets.reserve("shared", 1, Cost(0.05, 0.0, None))
            granted += 1
        except BudgetRefusal:
            pass
    return granted


def test_two_gateway_processes_on_one_ledger_cannot_both_pass_on_the_same_money(
    tmp_path: Path,
) -> None:
    """The check and the hold are one step under the volume's lock: 2 processes x 20 holds of
    $0.05 against $0.50 grant exactly 10, however they interleave."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from orchestration_protocol import Layout, Task, write_task

    layout = Layout(tmp_path / "orchestration").ensure()
    write_task(layout, Task(id="shared", prompt="p", max_budget_usd=0.50))
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        start = manager.Event()
        futures = [pool.submit(_reserve_many, str(layout.root), 20, start) for _ in range(2)]
        start.set()
        granted = [future.result(timeout=60) for future in futures]
    assert sum(granted) == 10, granted


def test_holds_of_a_gateway_that_died_are_charged_by_the_next_one(tmp_path: Path) -> None:
    from gateway.holds import HoldBook
    from orchestration_protocol import Layout
    from orchestration_protocol.gateway import read_ledger

    layout = Layout(tmp_path / "orchestration").ensure()
    dead = HoldBook(layout)
    dead.hold("crashed", 1, 0.25)
    dead.close()  # its lock is free, as when its process died; the hold is left behind
    assert HoldBook(layout).sweep() == 1
    entry = read_ledger(layout, "crashed")[0]
    assert (entry.outcome, entry.cost_usd) == ("gateway_gone", 0.25)


def test_policy_refuses_server_tools_and_unknown_keys_and_strips_betas() -> None:
    from gateway.policy import EgressThroughApi

    policy = Policy()
    with pytest.raises(EgressThroughApi, match="'mcp_servers'"):
        policy.check_body({"model": "m", "mcp_servers": []})
    with pytest.raises(EgressThroughApi, match="code_execution_20250825"):
        policy.check_body({"tools": [{"type": "code_execution_20250825", "name": "x"}]})
    policy.check_body({"tools": [{"name": "Bash", "input_schema": {}}]})
    headers = policy.forward_headers([("anthropic-beta", "files-api-2025-04-14, effort-2025-11-24"),
                                      ("X-Custom-Exfil", "x"), ("X-Stainless-Os", "Linux")])
    assert headers == {"anthropic-beta": "effort-2025-11-24", "x-stainless-os": "Linux"}
    wider = policy.extended({"server_tools": ["web_search_20250305"]})
    wider.check_body({"tools": [{"type": "web_search_20250305", "name": "web_search"}]})
