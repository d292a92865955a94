"""The gateway's model API, run as a real process on a temporary orchestration root, with the
scripted model as its upstream (``require_key``: it answers 401 unless the gateway injected the
real credential) and callers bound to claims made through the real protocol."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.prices import PRICES
from orchestration_protocol import (
    Layout,
    Result,
    ResultStatus,
    request_cancel,
    try_claim_attempt,
    utc_now,
)
from orchestration_protocol.gateway import read_ledger, write_fleet_budget
from scripted_model import ScriptedModelServer
from tests.gateway_helpers import (
    REAL_KEY,
    GatewayProcess,
    api_client,
    claim_caller,
    message_body,
    write_secret,
)


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_secret(tmp_path_factory.mktemp("secrets"))


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(require_key=REAL_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, model: ScriptedModelServer,
           secrets: Path) -> Iterator[GatewayProcess]:
    """One gateway for the tests that change nothing but their own task (ids differ)."""
    layout = Layout(tmp_path_factory.mktemp("shared") / "orchestration").ensure()
    with GatewayProcess(layout, model.url, secrets) as process:
        yield process


@pytest.fixture
def gateway(layout: Layout, model: ScriptedModelServer, secrets: Path) -> Iterator[GatewayProcess]:
    """A gateway of the test's own (fleet budget, log, stop)."""
    with GatewayProcess(layout, model.url, secrets) as process:
        yield process


def post(layout: Layout, token: str | None, body: object, path: str = "/v1/messages",
         **headers: str) -> httpx.Response:
    if token is not None:
        headers["x-api-key"] = token
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with api_client(layout) as client:
        return client.post(path, content=content, headers=headers)


def assert_refused(response: httpx.Response, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["x-should-retry"] == "false"
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == error_type
    return str(body["error"]["message"])


# ------------------------------------------------------------------------------ forwarding


def test_real_credential_reaches_upstream_and_the_stream_arrives_in_pieces(
    layout: Layout, secrets: Path
) -> None:
    caller = claim_caller(layout, "stream")
    with (ScriptedModelServer(require_key=REAL_KEY, event_delay_s=0.3) as model,
          GatewayProcess(layout, model.url, secrets) as gateway):
        arrivals = []
        headers = {"x-api-key": caller.token, "anthropic-version": "2023-06-01",
                   "anthropic-beta": "claude-code-20250219"}
        with api_client(layout) as client, client.stream(
            "POST", "/v1/messages?beta=true", json=message_body(), headers=headers
        ) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("event:"):
                    arrivals.append((line, time.monotonic()))
        assert arrivals[0][0] == "event: message_start"
        assert arrivals[-1][0] == "event: message_stop"
        assert arrivals[-1][1] - arrivals[0][1] > 1.0  # the first came while the rest was made
        upstream = model.requests[-1]
        assert upstream.path == "/v1/messages?beta=true"
        sent = {k.lower(): v for k, v in upstream.headers.items()}
        assert sent["x-api-key"] == REAL_KEY
        assert sent["anthropic-version"] == "2023-06-01"
        assert sent["anthropic-beta"] == "claude-code-20250219"
        assert caller.token not in json.dumps(sent)
    assert gateway.process is not None and gateway.process.returncode == 0


def test_non_streamed_reply_is_in_the_ledger_with_tokens_and_cost(shared: GatewayProcess) -> None:
    layout = shared.layout
    caller = claim_caller(layout, "ledger")
    response = post(layout, caller.token, message_body(stream=False, model="claude-sonnet-4-5"))
    assert response.status_code == 200 and response.json()["usage"]["output_tokens"] == 5
    [entry] = read_ledger(layout, "ledger")
    assert (entry.outcome, entry.status_code, entry.attempt) == ("ok", 200, 1)
    assert (entry.input_tokens, entry.output_tokens, entry.model) == (10, 5, "claude-sonnet-4-5")
    sonnet = PRICES["sonnet"]
    assert entry.cost_usd == pytest.approx((10 * sonnet.input + 5 * sonnet.output) / 1e6)


def test_streamed_reply_is_metered_from_its_events(shared: GatewayProcess) -> None:
    layout = shared.layout
    caller = claim_caller(layout, "metered")
    response = post(layout, caller.token, message_body(), **{"authorization": "Bearer x"})
    assert response.status_code == 200  # x-api-key wins over a Bearer header
    [entry] = read_ledger(layout, "metered")
    assert (entry.input_tokens, entry.output_tokens, entry.outcome) == (10, 5, "ok")
    assert entry.cost_usd > 0


def test_bearer_token_identifies_the_caller_too(shared: GatewayProcess) -> None:
    layout = shared.layout
    caller = claim_caller(layout, "bearer")
    response = post(layout, None, message_body(stream=False),
                    authorization=f"Bearer {caller.token}")
    assert response.status_code == 200


def test_count_tokens_is_forwarded_and_costs_nothing(
    model: ScriptedModelServer, shared: GatewayProcess
) -> None:
    layout = shared.layout
    caller = claim_caller(layout, "count")
    response = post(layout, caller.token, message_body(), "/v1/messages/count_tokens")
    assert response.status_code == 200 and response.json()["input_tokens"] > 0
    assert model.requests[-1].kind == "count_tokens"
    assert read_ledger(layout, "count") == []


# ------------------------------------------------------------------------- lease-bound access


def test_token_is_refused_after_the_result_is_published(shared: GatewayProcess) -> None:
    layout = shared.layout
    caller = claim_caller(layout, "done")
    assert post(layout, caller.token, message_body()).status_code == 200
    caller.handle.publish_result(
        Result(task_id="done", status=ResultStatus.SUCCESS, completed_at=utc_now()))
    message = assert_refused(post(layout, caller.token, message_body()), 403, "permission_error")
    assert "has ended (success)" in message
    assert read_ledger(layout, "done")[-1].outcome == "refused"


def test_token_is_refused_once_a_later_attempt_claims(shared: GatewayProcess) -> None:
    layout = shared.layout
    caller = claim_caller(layout, "replaced", lease_s=0.5, max_attempts=2)
    time.sleep(0.7)
    assert try_claim_attempt(layout, "replaced", 2, worker_id="other") is not None
    message = assert_refused(post(layout, caller.token, message_body()), 403, "permission_error")
    assert "replaced by attempt 2" in message


def test_token_is_refused_after_a_cancel_request(shared: GatewayProcess) -> None:
    layout = shared.layout
    caller = claim_caller(layout, "cancelled")
    request_cancel(layout, "cancelled", "enough")
    message = assert_refused(post(layout, caller.token, message_body()), 403, "permission_error")
    assert "was cancelled" in message


def test_token_is_refused_when_the_lease_expired_without_heartbeats(
    shared: GatewayProcess
) -> None:
    layout = shared.layout
    caller = claim_caller(layout, "zombie", lease_s=0.5)
    time.sleep(0.7)
    message = assert_refused(post(layout, caller.token, message_body()), 403, "permission_error")
    assert "let its lease expire" in message


# ------------------------------------------------------------------------------- bad input


def test_unknown_or_missing_token_is_401(shared: GatewayProcess) -> None:
    layout = shared.layout
    assert_refused(post(layout, "orc-not-a-token", message_body()), 401, "authentication_error")
    assert_refused(post(layout, None, message_body()), 401, "authentication_error")


def test_malformed_body_is_400(shared: GatewayProcess) -> None:
    layout = shared.layout
    caller = claim_caller(layout, "malformed")
    assert_refused(post(layout, caller.token, b"{not json"), 400, "invalid_request_error")
    assert_refused(post(layout, caller.token, b"[1, 2]"), 400, "invalid_request_error")


def test_oversize_body_is_413_by_length_and_by_stream(layout: Layout, secrets: Path) -> None:
    caller = claim_caller(layout, "big")
    body = json.dumps(message_body("x" * 5000)).encode()
    with (ScriptedModelServer(require_key=REAL_KEY) as model,
          GatewayProcess(layout, model.url, secrets, ["--max-body-bytes", "4096"])):
        assert_refused(post(layout, caller.token, body), 413, "request_too_large")
        with api_client(layout) as client:
            chunked = client.post("/v1/messages", content=iter([body[:3000], body[3000:]]),
                                  headers={"x-api-key": caller.token})
        assert_refused(chunked, 413, "request_too_large")
    assert model.requests == []


def test_unknown_path_is_404(shared: GatewayProcess) -> None:
    layout = shared.layout
    with api_client(layout) as client:
        assert_refused(client.get("/v1/models"), 404, "not_found_error")
        assert client.get("/health").json() == {"status": "ok"}


# --------------------------------------------------------------------------- upstream trouble


def test_unreachable_upstream_is_502_at_once(layout: Layout, secrets: Path) -> None:
    caller = claim_caller(layout, "down")
    with GatewayProcess(layout, "http://127.0.0.1:9", secrets):
        started = time.monotonic()
        response = post(layout, caller.token, message_body())
        assert time.monotonic() - started < 5
    message = assert_refused(response, 502, "api_error")
    assert "the model endpoint http://127.0.0.1:9 cannot be reached" in message
    [entry] = read_ledger(layout, "down")
    assert (entry.outcome, entry.status_code) == ("upstream_error", 502)


def test_429_is_waited_out_and_the_request_succeeds(layout: Layout, secrets: Path) -> None:
    caller = claim_caller(layout, "busy")
    with (ScriptedModelServer(require_key=REAL_KEY, rate_limit_first=2, retry_after_s=0.2) as model,
          GatewayProcess(layout, model.url, secrets)):
        response = post(layout, caller.token, message_body())
        assert response.status_code == 200
        assert [r.status for r in model.requests] == [429, 429, 200]
    [entry] = read_ledger(layout, "busy")
    assert (entry.outcome, entry.retries) == ("ok", 2)


def test_429_beyond_the_retry_bound_reaches_the_caller(layout: Layout, secrets: Path) -> None:
    caller = claim_caller(layout, "swamped")
    with (ScriptedModelServer(require_key=REAL_KEY, rate_limit_first=5, retry_after_s=0.1) as model,
          GatewayProcess(layout, model.url, secrets, ["--max-retries", "1"])):
        response = post(layout, caller.token, message_body())
    assert response.status_code == 429 and response.headers["retry-after"] == "0.1"
    [entry] = read_ledger(layout, "swamped")
    assert (entry.outcome, entry.retries) == ("upstream_error", 1)


# -------------------------------------------------------------------------------- budgets


def test_task_budget_stops_the_request_past_it(shared: GatewayProcess) -> None:
    """100 output tokens of Opus could cost $0.0025: more than the budget, refused unsent."""
    layout = shared.layout
    caller = claim_caller(layout, "thrifty", max_budget_usd=0.0001)
    message = assert_refused(post(layout, caller.token, message_body()), 403, "permission_error")
    assert "task thrifty has spent $0.0000 of its $0.0001 budget" in message
    assert "this request could cost up to $0.0028" in message  # and ~50 input tokens
    entry = read_ledger(layout, "thrifty")[-1]
    assert entry.outcome == "refused" and entry.error and "budget" in entry.error


def test_fleet_budget_stops_every_task(layout: Layout, gateway: GatewayProcess) -> None:
    first, second = claim_caller(layout, "first"), claim_caller(layout, "second")
    write_fleet_budget(layout, 0.004)  # one request (could cost $0.0028) fits
    assert post(layout, first.token, message_body()).status_code == 200  # cost $0.000175
    larger = {**message_body(), "max_tokens": 200}  # could cost $0.0053
    message = assert_refused(post(layout, second.token, larger), 403, "permission_error")
    assert "the fleet has spent $0.0002 of its $0.0040 budget since" in message
    assert read_ledger(layout, "second")[-1].outcome == "refused"


# ----------------------------------------------------------------------------- the process


def test_log_names_requests_but_never_a_credential_or_token(
    layout: Layout, gateway: GatewayProcess
) -> None:
    caller = claim_caller(layout, "quiet")
    post(layout, caller.token, message_body("reply: secret prompt text"))
    post(layout, "orc-unknown-token-value", message_body())
    gateway.stop()
    log = gateway.stderr
    assert "task=quiet attempt=1 /v1/messages 200 ok in=10 out=5" in log
    assert REAL_KEY not in log and caller.token not in log and "orc-unknown-token-value" not in log
    assert "secret prompt text" not in log


def test_bad_settings_are_one_sentence_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.server import main

    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--root", str(tmp_path / "absent")]) == 2
    assert main(["--root", str(tmp_path), "--upstream", "ftp://x"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].endswith(f"the orchestration root {tmp_path / 'absent'} is not a directory; "
                             "pass --root or set ORCHESTRATION_DIR")
    assert "bad setting upstream (--upstream or ANTHROPIC_BASE_URL)" in lines[1]


def test_without_a_credential_model_requests_get_one_sentence_and_the_proxy_still_works(
    layout: Layout, model: ScriptedModelServer, tmp_path: Path
) -> None:
    with GatewayProcess(layout, model.url, tmp_path / "no-secrets") as process:
        caller = claim_caller(layout, "nocred")
        message = assert_refused(post(layout, caller.token, message_body()), 401, "authentication_error")
        assert "holds no model credential" in message and "--simulate" in message
        assert "model requests will be refused" in process.stderr


def test_concurrency_cap_queues_upstream_requests(layout: Layout, secrets: Path) -> None:
    caller = claim_caller(layout, "fanout")
    spans: list[tuple[float, float]] = []

    def stream_one() -> None:
        with api_client(layout) as client, client.stream(
            "POST", "/v1/messages", json=message_body(), headers={"x-api-key": caller.token}
        ) as response:
            chunks = response.iter_bytes()
            next(chunks)
            first = time.monotonic()
            for _ in chunks:
                pass
            spans.append((first, time.monotonic()))

    with (ScriptedModelServer(require_key=REAL_KEY, event_delay_s=0.15) as model,
          GatewayProcess(layout, model.url, secrets, ["--concurrency", "1"])):
        threads = [threading.Thread(target=stream_one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    (_, first_end), (second_start, _) = sorted(spans)
    assert second_start >= first_end - 0.05  # the second waited for the first's slot
    assert len(read_ledger(layout, "fanout")) == 2
