"""The Prometheus endpoints during a real simulated run on the local backend: the dashboard's
``/metrics`` (computed from the volume at each scrape) and the gateway's (latency, refusals,
upstream errors); every figure is checked against the volume's files. The real ``claude``
binary runs the claude task against the scripted model, through the real gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestration_protocol import Layout, read_board, utc_now
from orchestration_protocol.gateway import read_egress, read_ledger
from tests.conftest import require
from tests.dashboard_helpers import free_port, served
from tests.gitrepo import make_remote

VENV_BIN = Path(sys.executable).parent
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, **headers: str) -> Samples:
    response = httpx.get(url, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def named(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (metric, labels), value in samples.items() if metric == name}


@pytest.fixture
def claude_on_path(tmp_path: Path) -> str:
    return claude_path(tmp_path)


def claude_path(tmp_path: Path) -> str:
    """A PATH with the real ``claude`` binary (skips when there is none) and this venv."""
    from scripted_model import ClaudeNotFound, find_claude

    try:
        claude = find_claude()
    except ClaudeNotFound as error:
        require(False, str(error))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(claude)
    return f"{bin_dir}:{VENV_BIN}:{os.environ['PATH']}"


def orchestrator(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(VENV_BIN / "orchestrator"), "--root", str(root), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_the_metrics_match_the_volume_during_and_after_a_simulated_run(
    tmp_path: Path, claude_on_path: str
) -> None:
    layout = Layout(tmp_path / "orchestration").ensure()
    remote = make_remote(tmp_path)
    gateway_port = free_port()
    env = {
        **os.environ,
        "PATH": claude_on_path,
        "REPO_URL": str(remote),
        "ORCHESTRATOR_BACKEND": "local",
        "ORCHESTRATOR_HEARTBEAT_S": "0.5",
        "ORCHESTRATOR_GATEWAY_METRICS": f"127.0.0.1:{gateway_port}",
    }
    marker = tmp_path / "second-time"
    with served(layout.root) as url:
        # a command task that fails once and is retried, beside a claude task
        flaky = orchestrator(layout.root, env, "run", "--agent", "command", "--retries", "1",
                             f"test -f {marker} || {{ touch {marker}; exit 3; }}; sleep 2; echo ok")  # fmt: skip
        during: list[Samples] = []
        while flaky.poll() is None:  # scraped while it runs
            during.append(scrape(f"{url}/metrics"))
        out, _ = flaky.communicate(timeout=120)
        assert flaky.returncode == 0, out
        running = (("profile", "default"), ("state", "running"))
        assert any(named(d, "orchestrator_tasks").get(running) == 1 for d in during)
        assert all(sum(named(d, "orchestrator_tasks").values()) <= 1 for d in during)
        claude = orchestrator(layout.root, env, "run", "--simulate", "Add dark mode support")
        out, _ = claude.communicate(timeout=300)
        assert claude.returncode == 0, out
        fleet = scrape(f"{url}/metrics")
    gateway = scrape(f"http://127.0.0.1:{gateway_port}/metrics")

    board = read_board(layout)
    states = board.states(now=utc_now())
    by_state = Counter((state.value, "default") for state in states.values())
    tasks = named(fleet, "orchestrator_tasks")
    assert {dict(labels)["state"]: v for labels, v in tasks.items()} == {"success": 2.0}
    assert {(dict(k)["state"], dict(k)["profile"]): v for k, v in tasks.items()} == by_state
    claims = sum(len(list(layout.claim_dir(task_id).glob("*.json"))) for task_id in states)
    assert named(fleet, "orchestrator_attempts_started_total") == {
        (("profile", "default"),): claims
    }
    assert claims == 3
    ended = {
        dict(k)["ending"]: v for k, v in named(fleet, "orchestrator_attempts_ended_total").items()
    }
    assert ended == {"failed": 1.0, "success": 2.0}

    # cost and tokens by task and model: the ledger's sums
    cost = named(fleet, "orchestrator_cost_usd_total")
    tokens = named(fleet, "orchestrator_tokens_total")
    ledgers = {task_id: read_ledger(layout, task_id) for task_id in states}
    assert any(ledgers.values()) and cost
    for task_id, entries in ledgers.items():
        for model in {entry.model or "unknown" for entry in entries}:
            mine = [entry for entry in entries if (entry.model or "unknown") == model]
            labels = (("model", model), ("task", task_id))
            assert cost[labels] == pytest.approx(sum(entry.cost_usd for entry in mine))
            output = (("kind", "output"), ("model", model), ("task", task_id))
            assert tokens[output] == sum(entry.output_tokens for entry in mine) > 0
    egress = [entry for task_id in states for entry in read_egress(layout, task_id)]
    allowed = sum(1 for entry in egress if entry.allowed)
    assert named(fleet, "orchestrator_egress_connections_total") == {
        (("verdict", "allowed"),): allowed, (("verdict", "refused"),): len(egress) - allowed
    }  # fmt: skip

    # the gateway: one latency observation per ledger line of /v1/messages
    messages = [e for entries in ledgers.values() for e in entries if e.path == "/v1/messages"]
    counted = named(gateway, "orchestrator_gateway_request_duration_seconds_count")
    by_outcome = {
        dict(k)["outcome"]: v for k, v in counted.items() if dict(k)["path"] == "/v1/messages"
    }
    assert by_outcome == dict(Counter(entry.outcome for entry in messages))
    assert not named(gateway, "orchestrator_gateway_upstream_errors_total")


def test_metrics_ask_for_the_dashboard_token(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root").ensure()
    token = "metrics-test-token-0123456789"
    with served(layout.root, env={"ORCHESTRATOR_DASHBOARD_TOKEN": token}) as url:
        assert httpx.get(f"{url}/metrics").status_code == 401
        samples = scrape(f"{url}/metrics", Authorization=f"Bearer {token}")
    assert named(samples, "orchestrator_tasks") == {}
    assert named(samples, "orchestrator_egress_connections_total") == {
        (("verdict", "allowed"),): 0.0, (("verdict", "refused"),): 0.0
    }  # fmt: skip
