"""A gateway of one node of several: its sockets in ``$ORCHESTRATOR_GATEWAY_DIR`` (not the root),
its node in ``$ORCHESTRATOR_GATEWAY_NODE``, and a caller token of another node refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration_protocol import Layout, Task, WorkerPhase, claim_task, utc_now, write_task
from orchestration_protocol.gateway import (
    GatewayCaller,
    api_socket,
    caller_refusal,
    mint_caller_token,
)
from tests.gateway_helpers import GatewayProcess, message_body, unix_client, write_secret
from worker.settings import resolve_worker_settings


def _caller(layout: Layout, task_id: str, node: str | None) -> tuple[GatewayCaller, str]:
    write_task(layout, Task(id=task_id, prompt="x"))
    handle = claim_task(layout, task_id, lease_s=60)
    assert handle is not None
    handle.heartbeat(WorkerPhase.RUNNING)
    caller = GatewayCaller(task_id=task_id, attempt=1, worker_id="w", issued_at=utc_now(), node=node)
    return caller, mint_caller_token(layout, caller)


def test_a_token_names_its_node_and_only_that_nodes_gateway_admits_it(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root")
    layout.ensure()
    caller, _ = _caller(layout, "t1", "node-a")
    assert caller_refusal(layout, caller, node="node-a") is None
    assert caller_refusal(layout, caller) is None  # a gateway of one host does not check nodes
    assert caller_refusal(layout, caller, node="node-b") == (
        "task t1 attempt 1 has a token for node node-a, not this gateway's node node-b"
    )
    nameless, _ = _caller(layout, "t2", None)
    assert "has a token for node (none)" in (caller_refusal(layout, nameless, node="node-b") or "")


def test_the_worker_reads_the_gateway_dir_and_node_from_the_contract(tmp_path: Path) -> None:
    settings = resolve_worker_settings(tmp_path, "w", env={
        "ORCHESTRATOR_GATEWAY_DIR": "/run/orchestrator-gateway", "ORCHESTRATOR_GATEWAY_NODE": "n1"})
    assert settings.gateway_dir == Path("/run/orchestrator-gateway") and settings.gateway_node == "n1"
    default = resolve_worker_settings(tmp_path, "w", env={})
    assert default.gateway_dir is None and default.gateway_node is None


def test_a_gateway_listens_in_its_node_local_dir_and_refuses_another_nodes_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout(tmp_path / "root")
    layout.ensure()
    sockets = tmp_path / "node-local"
    monkeypatch.setenv("ORCHESTRATOR_GATEWAY_DIR", str(sockets))
    monkeypatch.setenv("ORCHESTRATOR_GATEWAY_NODE", "node-b")
    _, stolen = _caller(layout, "t1", "node-a")
    gateway = GatewayProcess(layout, "http://127.0.0.1:9", write_secret(tmp_path / "secrets"))
    with gateway:
        assert str(sockets / "api.sock") in gateway.ready_line
        assert not api_socket(layout).exists()  # nothing in the shared root
        with unix_client(sockets / "api.sock", timeout=30) as client:
            reply = client.post("/v1/messages", json=message_body(stream=False),
                                headers={"x-api-key": stolen, "anthropic-version": "2023-06-01"})
    assert reply.status_code == 403, reply.text
    assert "has a token for node node-a, not this gateway's node node-b" in reply.text
