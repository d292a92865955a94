"""The gateway's Prometheus endpoint (gateway/metrics.py): a real gateway process forwarding to
the scripted model, scraped over HTTP; its figures are checked against the ledger it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import path_label, refusal_reason
from orchestration_protocol import Layout
from orchestration_protocol.gateway import read_ledger
from scripted_model import ScriptedModelServer
from tests.dashboard_helpers import free_port
from tests.gateway_helpers import (
    REAL_KEY,
    GatewayProcess,
    api_client,
    claim_caller,
    message_body,
    write_secret,
)


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def metered(layout: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    monkeypatch.setenv("ORCHESTRATOR_GATEWAY_METRICS", f"127.0.0.1:{port}")
    with ScriptedModelServer(require_key=REAL_KEY) as model, \
            GatewayProcess(layout, model.url, write_secret(tmp_path / "secrets")):  # fmt: skip
        yield f"http://127.0.0.1:{port}/metrics"


def post(layout: Layout, token: str, body: dict[str, object]) -> httpx.Response:
    with api_client(layout) as client:
        return client.post("/v1/messages", content=json.dumps(body), headers={"x-api-key": token})


def test_latency_refusals_and_upstream_errors_match_the_ledger(
    layout: Layout, metered: str
) -> None:
    caller = claim_caller(layout, "metered-task")
    for stream in (True, False):
        assert post(layout, caller.token, message_body(stream=stream)).status_code == 200
    assert post(layout, "not-a-token", message_body()).status_code == 401
    assert post(layout, caller.token, {"model": "m", "messages": "not a list"}).status_code >= 400

    scraped = samples(metered)
    ledger = read_ledger(layout, "metered-task")
    ok = [entry for entry in ledger if entry.outcome == "ok"]
    key = (("outcome", "ok"), ("path", "/v1/messages"))
    assert (
        len(ok) == 2 and scraped[("orchestrator_gateway_request_duration_seconds_count", key)] == 2
    )
    assert scraped[("orchestrator_gateway_request_duration_seconds_sum", key)] > 0
    assert (
        scraped[("orchestrator_gateway_requests_refused_total", (("reason", "unauthenticated"),))]
        == 1
    )
    upstream_errors = [entry for entry in ledger if entry.outcome == "upstream_error"]
    counted = sum(value for (name, _), value in scraped.items()
                  if name == "orchestrator_gateway_upstream_errors_total")  # fmt: skip
    assert counted == len(upstream_errors)


def test_a_bad_metrics_address_is_one_sentence(layout: Layout, tmp_path: Path) -> None:
    env = {**os.environ, "ORCHESTRATOR_GATEWAY_METRICS": "nowhere", "PYTHONPATH": str(Path.cwd())}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--root", str(layout.root), "--upstream",
         "http://127.0.0.1:9", "--secrets-dir", str(write_secret(tmp_path / "s"))],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "$ORCHESTRATOR_GATEWAY_METRICS='nowhere' is not PORT or HOST:PORT" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_labels_stay_bounded() -> None:
    assert path_label("/model/anthropic.claude-x/invoke") == "bedrock"
    assert (
        path_label("/v1/projects/p/locations/r/publishers/anthropic/models/m:rawPredict")
        == "vertex"
    )
    assert path_label("/v1/messages/count_tokens") == "/v1/messages/count_tokens"
    assert path_label("/anything/else") == "other"
    assert (
        refusal_reason(403, "the gateway refuses this request: the task's budget is spent")
        == "budget"
    )
    assert refusal_reason(403, "no live claim") == "no_claim"
    assert refusal_reason(413, None) == "too_large"
