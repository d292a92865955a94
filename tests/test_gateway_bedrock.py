"""Bedrock and Vertex through the gateway: the real ``claude`` binary in its Bedrock (or Vertex)
gateway mode holds only a caller token, in its base URL (``/caller/<token>``); the real gateway
process signs for Bedrock (SigV4) or adds the Vertex token; the scripted model upstream accepts
only a request signed with the real key pair (or carrying the real token)."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from gateway.eventstream import EventStreamMeter, exception_message
from orchestration_protocol import Layout, Result, ResultStatus, utc_now
from orchestration_protocol.gateway import api_socket, read_ledger
from scripted_model import ScriptedModelServer, claude_env
from scripted_model.cloud import AwsKey, sigv4_refusal
from scripted_model.eventstream import chunk_message, encode_message
from tests.gateway_helpers import GatewayProcess, claim_caller, write_secret
from tests.test_gateway_claude import claude_binary
from worker.relay import Relay

ACCESS_KEY = "AKIAREALKEY0123456789"
SECRET_KEY = "real-aws-secret-key-0123456789abcdefghijkl"
REGION = "eu-west-1"
VERTEX_TOKEN = "ya29.real-vertex-access-token-0123456789"
AWS_KEY = AwsKey(ACCESS_KEY, SECRET_KEY, REGION)


# ----------------------------------------------------------------------------------- units


def events(reply_usage: dict[str, int]) -> list[dict[str, object]]:
    return [
        {"type": "message_start", "message": {"model": "claude-sonnet-4-5", "usage": {
            "input_tokens": reply_usage["input_tokens"], "output_tokens": 1}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "message_delta", "usage": {"output_tokens": reply_usage["output_tokens"]}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": 999, "outputTokenCount": 999}},
    ]


def test_event_stream_encoding_decodes_with_botocore() -> None:
    sent = events({"input_tokens": 12, "output_tokens": 34})
    buffer = EventStreamBuffer()
    buffer.add_data(b"".join(chunk_message(e) for e in sent))
    messages = list(buffer)
    assert [m.headers for m in messages] == [{":event-type": "chunk", ":content-type":
                                              "application/json", ":message-type": "event"}] * 4
    decoded = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in messages]
    assert decoded == sent


def test_meter_reads_usage_from_an_event_stream_fed_byte_by_byte() -> None:
    stream = b"".join(chunk_message(e) for e in events({"input_tokens": 12, "output_tokens": 34}))
    meter = EventStreamMeter()
    for i in range(len(stream)):
        meter.feed(stream[i : i + 1])
    assert meter.usage["input_tokens"] == 12 and meter.usage["output_tokens"] == 34
    assert meter.model == "claude-sonnet-4-5" and meter.error is None


def test_meter_falls_back_to_invocation_metrics_and_reads_exceptions() -> None:
    meter = EventStreamMeter()
    meter.feed(chunk_message({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": 7, "outputTokenCount": 8}}))
    assert (meter.usage["input_tokens"], meter.usage["output_tokens"]) == (7, 8)
    meter.feed(exception_message("throttlingException", "slow down"))
    assert meter.error == "throttlingException: slow down"


def test_meter_stops_on_a_corrupt_stream() -> None:
    good = chunk_message({"type": "message_stop"})
    meter = EventStreamMeter()
    meter.feed(good[:-1] + bytes([good[-1] ^ 0xFF]))
    assert meter.error is not None and "could not be read" in meter.error
    meter.feed(good)  # ignored from then on


def test_gateway_and_scripted_encoders_agree() -> None:
    from gateway.eventstream import encode_message as gateway_encode

    headers = {":message-type": "event", ":event-type": "chunk"}
    assert gateway_encode(headers, b"{}") == encode_message(headers, b"{}")


def signed(url: str, body: bytes, secret: str = SECRET_KEY, region: str = REGION) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body,
                         headers={"content-type": "application/json"})
    SigV4Auth(Credentials(ACCESS_KEY, secret), "bedrock", region).add_auth(request)
    return {**request.headers, "host": "127.0.0.1:9"}  # as an HTTP client sends it


def test_sigv4_check_accepts_botocore_signatures_only() -> None:
    url = "http://127.0.0.1:9/model/us.anthropic.claude%3Aopus/invoke-with-response-stream"
    body = b'{"max_tokens": 1}'
    headers = signed(url, body)
    assert sigv4_refusal(AWS_KEY, "POST", url, headers, body) is None
    assert "does not match" in (sigv4_refusal(AWS_KEY, "POST", url, headers, body + b" ") or "")
    assert "does not match" in (sigv4_refusal(AWS_KEY, "POST", url.replace("opus", "haiku"),
                                               headers, body) or "")
    assert "does not match" in (sigv4_refusal(AWS_KEY, "POST", url, signed(url, body, "wrong"),
                                              body) or "")
    assert "scope" in (sigv4_refusal(AWS_KEY, "POST", url, signed(url, body, region="us-east-1"),
                                     body) or "")
    assert "no AWS4" in (sigv4_refusal(AWS_KEY, "POST", url, {}, body) or "")
    old = time.time() + 3600
    assert "older" in (sigv4_refusal(AWS_KEY, "POST", url, headers, body, now=old) or "")


# ---------------------------------------------------------------------- through the gateway


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    write_secret(directory, "AWS_ACCESS_KEY_ID", ACCESS_KEY)
    write_secret(directory, "AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    write_secret(directory, "AWS_REGION", REGION)
    write_secret(directory, "GOOGLE_OAUTH_ACCESS_TOKEN", VERTEX_TOKEN)
    return directory


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(aws_key=AWS_KEY, vertex_token=VERTEX_TOKEN, rate_limit_first=0,
                             retry_after_s=0.2) as server:
        yield server


@pytest.fixture
def gateway(layout: Layout, model: ScriptedModelServer, secrets: Path) -> Iterator[GatewayProcess]:
    args = ["--bedrock-upstream", model.url, "--vertex-upstream", model.url]
    with GatewayProcess(layout, "http://127.0.0.1:9", secrets, args) as process:
        yield process


def cloud_env(mode: str, base_url: str, home: Path) -> dict[str, str]:
    """What a worker's agent gets in Bedrock or Vertex mode: no credential, a token in the URL."""
    env = claude_env(base_url, home)
    del env["ANTHROPIC_BASE_URL"], env["ANTHROPIC_API_KEY"]
    if mode == "bedrock":
        env.update(CLAUDE_CODE_USE_BEDROCK="1", CLAUDE_CODE_SKIP_BEDROCK_AUTH="1",
                   ANTHROPIC_BEDROCK_BASE_URL=base_url, AWS_REGION=REGION)
    else:
        env.update(CLAUDE_CODE_USE_VERTEX="1", CLAUDE_CODE_SKIP_VERTEX_AUTH="1",
                   ANTHROPIC_VERTEX_BASE_URL=base_url, CLOUD_ML_REGION="us-east5",
                   ANTHROPIC_VERTEX_PROJECT_ID="test-project")
    return env


def run_claude(mode: str, base_url: str, tmp_path: Path, prompt: str) -> dict[str, object]:
    env = cloud_env(mode, base_url, tmp_path / f"home-{mode}")
    run = subprocess.run([str(claude_binary()), "-p", prompt, "--output-format", "json"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.stdout, run.stderr
    result: dict[str, object] = json.loads(run.stdout)
    return result


@pytest.mark.parametrize("mode", ["bedrock", "vertex"])
def test_claude_in_cloud_mode_succeeds_with_only_a_caller_token_in_its_url(
    mode: str, layout: Layout, tmp_path: Path, model: ScriptedModelServer, gateway: GatewayProcess
) -> None:
    claude_binary()
    caller = claim_caller(layout, f"{mode}-run")
    with Relay(api_socket(layout)) as relay:
        base_url = f"{relay.url}/caller/{caller.token}"
        result = run_claude(mode, base_url, tmp_path, f"reply: through {mode}")
        assert result["subtype"] == "success" and not result["is_error"], result
        assert result["result"] == f"through {mode}"
        recorded = model.requests
        assert recorded and all(r.kind in ("turn", "side", "inference_profiles") for r in recorded)
        assert any(r.kind == "turn" for r in recorded)
        if mode == "bedrock":
            assert all({k.lower(): v for k, v in r.headers.items()}["authorization"]
                       .startswith("AWS4-HMAC-SHA256 ") for r in recorded)
            assert all(r.path.startswith(("/model/", "/inference-profiles")) for r in recorded)
        else:
            assert all(r.headers.get("authorization") == f"Bearer {VERTEX_TOKEN}" for r in recorded)
            assert all(r.path.startswith("/v1/projects/test-project/locations/us-east5/")
                       for r in recorded)
        ledger = read_ledger(layout, f"{mode}-run")
        assert ledger and all(e.outcome == "ok" for e in ledger)
        assert all(e.input_tokens > 0 and e.output_tokens > 0 and e.cost_usd > 0 for e in ledger)
        assert all(e.model and "opus" in e.model for e in ledger)

        caller.handle.publish_result(
            Result(task_id=f"{mode}-run", status=ResultStatus.SUCCESS, completed_at=utc_now()))
        count = len(model.requests)
        refused = run_claude(mode, base_url, tmp_path, "reply: after the lease")
        assert refused["is_error"], refused
        assert "refuses this caller" in str(refused["result"]), refused
        assert len([r for r in model.requests[count:] if r.kind == "turn"]) == 0
        assert read_ledger(layout, f"{mode}-run")[-1].outcome == "refused"
    log = gateway.stderr
    for secret in (SECRET_KEY, ACCESS_KEY, VERTEX_TOKEN, caller.token):
        assert secret not in log


def bedrock_post(relay: Relay, token: str, stream: bool = True) -> httpx.Response:
    action = "invoke-with-response-stream" if stream else "invoke"
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100,
            "messages": [{"role": "user", "content": "reply: direct"}]}
    url = f"{relay.url}/caller/{token}/model/us.anthropic.claude-haiku-4-5/{action}"
    return httpx.post(url, json=body, timeout=30)


def test_bedrock_backpressure_unstreamed_reply_and_unknown_caller(
    layout: Layout, model: ScriptedModelServer, gateway: GatewayProcess
) -> None:
    caller = claim_caller(layout, "bedrock-direct")
    model.rate_limit_left = 1
    with Relay(api_socket(layout)) as relay:
        streamed = bedrock_post(relay, caller.token)
        assert streamed.status_code == 200
        assert streamed.headers["content-type"] == "application/vnd.amazon.eventstream"
        whole = bedrock_post(relay, caller.token, stream=False)
        assert whole.status_code == 200 and whole.json()["type"] == "message"
        sneaky = httpx.post(f"{relay.url}/caller/{caller.token}/model/x/%2E%2E/%2E%2E/y/invoke",
                            json={"max_tokens": 1}, timeout=30)
        assert sneaky.status_code == 400 and "segment" in sneaky.json()["error"]["message"]
        unknown = bedrock_post(relay, "orc-not-a-token")
        assert unknown.status_code == 401 and unknown.headers["x-should-retry"] == "false"
        assert unknown.json()["error"]["type"] == "authentication_error"
    first, second, _ = read_ledger(layout, "bedrock-direct")
    assert first.retries == 1 and first.outcome == "ok" and first.output_tokens > 0
    assert first.model == "us.anthropic.claude-haiku-4-5" and second.input_tokens > 0
    assert [r.kind for r in model.requests][:2] == ["rate_limited", "side"]  # no tools: a side answer


def test_bedrock_refused_without_aws_credential(layout: Layout, tmp_path: Path,
                                                model: ScriptedModelServer) -> None:
    secrets = write_secret(tmp_path / "only-anthropic")
    caller = claim_caller(layout, "no-aws")
    with (GatewayProcess(layout, model.url, secrets, ["--bedrock-upstream", model.url]),
          Relay(api_socket(layout)) as relay):
        answer = bedrock_post(relay, caller.token)
    assert answer.status_code == 401 and "AWS_ACCESS_KEY_ID" in answer.json()["error"]["message"]
    assert model.requests == []


def test_bedrock_budget_stop_is_a_409_claude_code_does_not_retry(
    layout: Layout, model: ScriptedModelServer, gateway: GatewayProcess
) -> None:
    caller = claim_caller(layout, "bedrock-budget", max_budget_usd=0.000001)
    with Relay(api_socket(layout)) as relay:
        stopped = bedrock_post(relay, caller.token)
    assert stopped.status_code == 409 and stopped.headers["x-should-retry"] == "false"
    error = stopped.json()["error"]
    assert error["type"] == "permission_error" and "budget" in error["message"]
    assert [e.outcome for e in read_ledger(layout, "bedrock-budget")] == ["refused"]
