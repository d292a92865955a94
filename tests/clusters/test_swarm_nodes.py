"""Two Swarm nodes on one machine: a job on the worker node writes into the shared directory
and reaches a service task on the manager node over an overlay network."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.clusters.swarm_nodes import SwarmNodes

pytestmark = [pytest.mark.swarm_nodes, pytest.mark.docker, pytest.mark.slow]

PONG = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('', 7000)); s.listen()\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(b'pong'); c.close()\n"
)
PING = (
    "import os, socket, time\n"
    "for _ in range(60):\n"
    "    try:\n"
    "        reply = socket.create_connection((os.environ['PEER'], 7000), timeout=2).recv(16)\n"
    "        break\n"
    "    except OSError as error:\n"
    "        reply = repr(error).encode(); time.sleep(1)\n"
    "open(os.environ['OUT'], 'w').write(os.environ['NODE'] + ' ' + reply.decode())\n"
)


def _wait_job_complete(nodes: SwarmNodes, service: str) -> str:
    """Poll the job's task states until it leaves the running states; returns the last state."""
    state = ""
    for _ in range(240):
        state = nodes.docker(
            nodes.manager, "service", "ps", service, "--format", "{{.CurrentState}}"
        )
        if state.startswith(("Complete", "Failed", "Rejected")):
            return state
        time.sleep(0.5)
    return state


def test_job_on_worker_node_reaches_manager_node_and_writes_shared_dir(
    swarm_nodes: SwarmNodes,
) -> None:
    nodes = swarm_nodes
    tag = uuid.uuid4().hex[:8]
    net, pong, job = f"t-net-{tag}", f"t-pong-{tag}", f"t-job-{tag}"
    out = nodes.shared / f"{job}.txt"
    worker_id = nodes.docker(nodes.worker, "info", "--format", "{{.Swarm.NodeID}}").strip()
    mount = f"type=bind,source={nodes.shared},target={nodes.shared}"
    try:
        nodes.docker(nodes.manager, "network", "create", "-d", "overlay", net)
        nodes.docker(
            nodes.manager, "service", "create", "-q", "--detach", "--no-resolve-image", "--name", pong,
            "--network", net, "--endpoint-mode", "dnsrr",
            "--constraint", "node.role==manager", nodes.image, "python3", "-c", PONG,
        )  # fmt: skip
        nodes.docker(
            nodes.manager, "service", "create", "-q", "--detach", "--no-resolve-image", "--name", job,
            "--mode", "replicated-job", "--network", net, "--mount", mount,
            "--constraint", "node.role==worker", "--env", f"PEER={pong}",
            "--env", f"OUT={out}", "--env", "NODE={{.Node.ID}}",
            nodes.image, "python3", "-c", PING,
        )  # fmt: skip
        state = _wait_job_complete(nodes, job)
        assert state.startswith("Complete"), state
        assert out.read_text() == f"{worker_id} pong"
    finally:
        for service in (job, pong):
            nodes.docker(nodes.manager, "service", "rm", service, check=False)
        for _ in range(60):
            if not nodes.docker(nodes.manager, "network", "rm", net, check=False):
                time.sleep(0.5)
                continue
            break
        out.unlink(missing_ok=True)
