"""``--backend swarm`` across two real nodes (``swarm_nodes``: node2 manager, node3 worker):
jobs placed by the profile, a gateway on every node, the trust model on the second node, a token
stolen on one node refused by the other's gateway, and a node that goes away mid-task.

The root is a directory of the shared host dir that both nodes bind-mount at the same path (the
stand-in for NFS); the manager is this process's ``orchestrator`` against node2's engine."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestration_protocol import Layout, Result, read_model
from orchestration_protocol.gateway import read_ledger
from orchestration_protocol.mirrors import mirror_dir
from tests.clusters.swarm_nodes import SwarmNode, SwarmNodes
from tests.conftest import docker_scope
from tests.gitrepo import make_remote, show
from tests.manager.test_manager_docker import VENV_BIN

pytestmark = [pytest.mark.swarm_nodes, pytest.mark.docker, pytest.mark.slow]

IMAGE = os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker"
KEY = "sk-ant-simulated-key-for-the-scripted-model-0000"
"""The credential the gateway holds in simulation: no worker may find it in any form."""


@dataclass
class Cluster:
    """One root on the two-node swarm, and how to drive the orchestrator against it."""

    nodes: SwarmNodes
    layout: Layout
    env: dict[str, str]

    def orchestrator(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "orchestrator"), *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def node_id(self, node: SwarmNode) -> str:
        return self.nodes.docker(node, "info", "--format", "{{.Swarm.NodeID}}").strip()

    def result(self, task_id: str) -> Result:
        return read_model(self.layout.result_file(task_id), Result, task_id)

    def job_node(self, task_id: str, attempt: int = 1) -> str:
        """The node id the task's attempt ran on (from its Swarm task)."""
        manager = self.nodes.manager
        [service] = self.nodes.docker(
            manager, "service", "ls", "-q", "--filter", f"label=orchestrator.task={task_id}",
            "--filter", f"label=orchestrator.attempt={attempt}").split()
        task = self.nodes.docker(manager, "service", "ps", "-q", service).split()[0]
        return self.nodes.docker(manager, "inspect", task, "--format", "{{.NodeID}}").strip()

    def container_on(self, node: SwarmNode, task_id: str) -> str:
        """The id of the running container of ``task_id``'s worker on ``node``."""
        return self.nodes.docker(node, "ps", "-q", "--filter", f"label=orchestrator.task={task_id}",
                                 "--filter", "status=running").strip()


@pytest.fixture
def cluster(swarm_nodes: SwarmNodes, tmp_path: Path) -> Iterator[Cluster]:
    root = swarm_nodes.shared / f"root-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    remote = make_remote(tmp_path)
    profiles = tmp_path / "profiles.yaml"
    limits = f"  image: {IMAGE}\n  memory: 512m\n  cpus: 0.5\n"
    profiles.write_text(
        f"default:\n{limits}"
        f"first:\n{limits}  placement: ['node.role==manager']\n"
        f"second:\n{limits}  placement: ['node.role==worker']\n"
    )
    keep = {k: v for k, v in os.environ.items()
            if k not in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_BASE_URL",
                         "ORCHESTRATOR_VOLUME", "ORCHESTRATOR_NETWORK", "ORCHESTRATOR_SIMULATE")}
    env = {**keep, "DOCKER_HOST": swarm_nodes.manager.socket, "ORCHESTRATION_DIR": str(root),
           "ORCHESTRATOR_BACKEND": "swarm", "ORCHESTRATOR_WORKER_IMAGE": IMAGE,
           "ORCHESTRATOR_PROFILES": str(profiles), "ORCHESTRATOR_HEARTBEAT_S": "1",
           "ORCHESTRATOR_LEASE_S": "10", "REPO_URL": str(remote)}
    made = Cluster(swarm_nodes, Layout(root), env)
    try:
        yield made
    finally:
        made.orchestrator("cleanup", "--all", "--gateway", "--simulation")
        label = f"label=orchestrator.root=bind:{root}"
        for service in swarm_nodes.docker(swarm_nodes.manager, "service", "ls", "-q",
                                          "--filter", label).split():
            swarm_nodes.docker(swarm_nodes.manager, "service", "rm", service, check=False)
        for node in (swarm_nodes.manager, swarm_nodes.worker):  # what a manager cannot reach
            wait_for("the root's networks and volumes gone",
                     lambda node=node: pruned(swarm_nodes, node, label), 180)


def pruned(nodes: SwarmNodes, node: SwarmNode, label: str) -> bool:
    """Whether ``node`` holds no network or volume of the root any more (removing the ended
    containers Swarm keeps of removed services, then pruning what is left)."""
    left = False
    for kind in ("volume", "network"):  # a removed service's task may still be ending here
        for name in nodes.docker(node, kind, "ls", "-q", "--filter", label).split():
            for container in nodes.docker(node, "ps", "-aq", "--filter", f"{kind}={name}").split():
                nodes.docker(node, "rm", "-f", container, check=False)
    for kind in ("network", "volume"):
        names = nodes.docker(node, kind, "ls", "-q", "--filter", label).split()
        if kind == "network":
            names = [name for name in names if not only_load_balancer(nodes, node, name)]
        if names:
            nodes.docker(node, kind, "prune", "-f", "--filter", label, check=False)
            left = True
    return not left


def only_load_balancer(nodes: SwarmNodes, node: SwarmNode, network: str) -> bool:
    """Whether a removed service's overlay network is held on ``node`` only by the engine's own
    load-balancer endpoint: a worker node keeps that until the swarm tidies it, and cannot
    remove it itself (no container of ours is on it)."""
    found = nodes.docker(node, "network", "inspect", network, "--format",
                         "{{range $k, $v := .Containers}}{{$k}} {{end}}", check=False).split()
    return bool(found) and all(name.startswith("lb-") for name in found)


HOSTILE = """
import base64, json, os, socket, urllib.request
key = bytes(b ^ 0x5A for b in {key!r}).decode()  # no form of the key in this script's text
needles = [key, base64.b64encode(key.encode()).decode(), key.encode().hex(), key[::-1]]
found = [f"env {{k}}" for k, v in os.environ.items() if any(n in v for n in needles)]
for pid in os.listdir("/proc"):
    for part in ("environ", "cmdline"):
        try:
            data = open(f"/proc/{{pid}}/{{part}}", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if any(n in data for n in needles):
            found.append(f"/proc/{{pid}}/{{part}}")
for top in ("/run", "/etc", "/tmp", "/home", "/root", "/var", "/runtime", "/orchestration", "/opt",
            os.getcwd(), os.path.expanduser("~")):
    for base, _, files in os.walk(top):
        if "/site-packages/manager" in base:
            continue  # the source holding the simulation's public key constant
        for name in files:
            path = os.path.join(base, name)
            try:
                if os.path.getsize(path) < 1 << 20 and any(
                        n.encode() in open(path, "rb").read() for n in needles):
                    found.append(path)
            except OSError:
                pass
reach = {{}}
for host, port in {targets!r}:
    try:
        socket.create_connection((host, port), timeout=3).close()
        reach[f"{{host}}:{{port}}"] = "ALLOWED"
    except OSError as error:
        reach[f"{{host}}:{{port}}"] = type(error).__name__ + " " + str(error)
request = urllib.request.Request(
    os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", method="POST",
    headers={{"x-api-key": os.environ["ANTHROPIC_API_KEY"], "content-type": "application/json",
             "anthropic-version": "2023-06-01"}},
    data=json.dumps({{"model": "claude-sonnet-4-5", "max_tokens": 5,
                     "messages": [{{"role": "user", "content": "hi"}}]}}).encode())
try:
    model = urllib.request.urlopen(request, timeout=30).status
except Exception as error:
    model = repr(error)
token = base64.b64encode(os.environ["ANTHROPIC_API_KEY"].encode()).decode()
print("PROBES " + json.dumps({{"found": found, "reach": reach, "model": model, "token": token}}))
"""


def command(script: str) -> str:
    """A shell command that runs ``script`` in the worker's Python."""
    return f"python3 -c \"$(echo {base64.b64encode(script.encode()).decode()} | base64 -d)\""


def probes_of(cluster: Cluster, task_id: str) -> dict:
    output = cluster.result(task_id).output or ""
    line = next(line for line in output.splitlines() if line.startswith("PROBES "))
    return json.loads(line.removeprefix("PROBES "))


def wait_for(what: str, check, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def internet(nodes: SwarmNodes, tag: str) -> tuple[str, str]:
    """A test "internet": an HTTP server as a service on an attachable overlay network, on the
    manager node; its name and its address."""
    name, network = f"t-internet-{tag}", f"t-inet-{tag}"
    nodes.docker(nodes.manager, "network", "create", "-d", "overlay", "--attachable", network)
    nodes.docker(nodes.manager, "service", "create", "-q", "--detach", "--no-resolve-image",
                 "--name", name, "--network", network, "--endpoint-mode", "dnsrr",
                 "--constraint", "node.role==manager", "--entrypoint", "python3", IMAGE,
                 "-m", "http.server", "8000")
    container = wait_for("the internet container", lambda: nodes.docker(
        nodes.manager, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}").strip())
    address = nodes.docker(nodes.manager, "inspect", container, "--format",
                           "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}").split()[0]
    return name, address


def test_on_the_second_node_a_hostile_task_finds_and_reaches_nothing_and_an_honest_one_succeeds(
    cluster: Cluster,
) -> None:
    nodes, tag = cluster.nodes, uuid.uuid4().hex[:6]
    second, first = cluster.node_id(nodes.worker), cluster.node_id(nodes.manager)
    name, address = internet(nodes, tag)
    try:
        assert cluster.orchestrator("task", "create", "--id", "peer", "--profile", "second",
                                    "--agent", "command", "python3 -m http.server 8001 & sleep 60"
                                    ).returncode == 0
        spawned = cluster.orchestrator("spawn", "--simulate", "second", "peer")
        assert spawned.returncode == 0, spawned.stderr
        peer = wait_for("the peer worker", lambda: cluster.container_on(nodes.worker, "peer"))
        peer_ip = nodes.docker(nodes.worker, "inspect", peer, "--format",
                               "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}").split()[0]
        targets = [
            (name, 8000), (address, 8000),            # the "internet" service
            (nodes.manager.address, 2377),            # the other node's swarm port
            (nodes.manager.address, 7946),
            (nodes.worker.address, 7946),             # its own node (the host it runs on)
            ("10.97.3.1", 7946), ("172.17.0.1", 2375),  # its engine's bridge, the main host's
            (peer_ip, 8001),                          # another worker on the same node
            (f"orchestrator-scripted-model-{docker_scope(cluster.layout.root)}", 8080),
        ]
        hostile = HOSTILE.format(key=[b ^ 0x5A for b in KEY.encode()], targets=targets)
        for task_id, profile, prompt in (
            ("hostile", "second", command(hostile)),
            ("honest", "second", "Add dark mode support"),
        ):
            args = ["--agent", "command"] if task_id == "hostile" else []
            created = cluster.orchestrator("task", "create", "--id", task_id, "--profile", profile,
                                           *args, prompt)
            assert created.returncode == 0, created.stderr
            spawned = cluster.orchestrator("spawn", "--simulate", profile, task_id)
            assert spawned.returncode == 0, spawned.stderr
        waited = cluster.orchestrator("wait", "hostile", "honest", "--timeout", "240")
        assert waited.returncode == 0, waited.stdout + waited.stderr
    finally:
        nodes.docker(nodes.manager, "service", "rm", name, check=False)
        cluster.orchestrator("task", "cancel", "peer")
        wait_for("the internet's network free", lambda: nodes.docker(
            nodes.manager, "network", "rm", f"t-inet-{tag}", check=False) or True, 30)

    assert cluster.job_node("hostile") == second and cluster.job_node("honest") == second
    probes = probes_of(cluster, "hostile")
    assert probes["found"] == [], probes["found"]
    assert "ALLOWED" not in json.dumps(probes["reach"]), probes["reach"]
    assert "refused" not in json.dumps(probes["reach"]).lower(), probes["reach"]  # not even a RST
    assert probes["model"] == 200, probes
    assert cluster.result("honest").status == "success"
    for task_id in ("hostile", "honest"):
        ledger = read_ledger(cluster.layout, task_id)
        assert ledger and {entry.node for entry in ledger} == {second}, ledger
    assert first != second
    # nothing of the gateway's sockets is in the shared root: they are node-local
    assert not list((cluster.layout.root / "gateway").glob("*.sock"))


VICTIM = """
import base64, os, sys, time
print("TOKEN " + base64.b64encode(os.environ["ANTHROPIC_API_KEY"].encode()).decode(), flush=True)
time.sleep(90)
"""
USE_TOKEN = """
import json, socket, sys
body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5,
                   "messages": [{"role": "user", "content": "hi"}]}).encode()
head = ("POST /v1/messages HTTP/1.0\\r\\nhost: gateway\\r\\nx-api-key: %s\\r\\ncontent-type: application/json\\r\\n"
        "anthropic-version: 2023-06-01\\r\\ncontent-length: %d\\r\\n\\r\\n" % (sys.argv[1], len(body)))
s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect("/run/orchestrator-gateway/api.sock")
s.sendall(head.encode() + body)
reply = b""
while chunk := s.recv(65536):
    reply += chunk
print(reply.decode(errors="replace"))
"""


def gateway_container(cluster: Cluster, node: SwarmNode) -> str:
    service = f"orchestrator-gateway-{docker_scope(cluster.layout.root)}"
    return cluster.nodes.docker(node, "ps", "-q", "--filter",
                                f"label=com.docker.swarm.service.name={service}").split()[0]


def test_a_token_stolen_on_one_node_is_refused_by_the_other_nodes_gateway(cluster: Cluster) -> None:
    nodes = cluster.nodes
    created = cluster.orchestrator("task", "create", "--id", "victim", "--profile", "first",
                                   "--agent", "command", command(VICTIM))
    assert created.returncode == 0, created.stderr
    spawned = cluster.orchestrator("spawn", "--simulate", "first", "victim")
    assert spawned.returncode == 0, spawned.stderr
    log = cluster.layout.log_file("victim")

    def stolen() -> str | None:
        text = log.read_text(errors="replace") if log.exists() else ""
        lines = [line for line in text.splitlines() if "TOKEN " in line]
        return base64.b64decode(lines[0].split("TOKEN ")[1].strip()).decode() if lines else None

    try:
        token = wait_for("the victim's token", stolen)
        replies = {
            node.name: nodes.docker(node, "exec", gateway_container(cluster, node),
                                    "python3", "-c", USE_TOKEN, token)
            for node in (nodes.worker, nodes.manager)
        }
    finally:
        cluster.orchestrator("task", "cancel", "victim")
    first = cluster.node_id(nodes.manager)
    assert cluster.job_node("victim") == first
    other = replies[nodes.worker.name]
    assert other.startswith("HTTP/1.1 403") or other.startswith("HTTP/1.0 403"), other
    assert f"has a token for node {first}, not this gateway's node" in other, other
    own = replies[nodes.manager.name]
    assert " 200 " in own.splitlines()[0], own  # its own node's gateway serves it


SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "engines" / "swarm-nodes.sh"


def power_off(node: SwarmNode) -> None:
    """As a node that loses power: SIGKILL to its engine, its containerd, its shims and every
    process of its containers (cgroup parent ``<name>``), at once."""
    victims = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            seen = (proc / "cmdline").read_bytes().decode(errors="replace") + (
                proc / "cgroup").read_text()
        except OSError:
            continue
        if node.name in seen:
            victims.append(int(proc.name))
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_node_that_goes_away_mid_task_the_task_is_retried_on_the_other_node_and_loses_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    nodes = cluster.nodes
    first, second = cluster.node_id(nodes.manager), cluster.node_id(nodes.worker)
    nodes.docker(nodes.manager, "node", "update", "--availability", "drain", first)
    run = subprocess.Popen(
        [str(VENV_BIN / "orchestrator"), "run", "--agent", "command", "--retries", "1", "-n", "1",
         "sleep 25 && echo survived > survived.txt"],
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            wait_for("the worker on the second node",
                     lambda: cluster.container_on(nodes.worker, "task-001"), 180)
        finally:
            nodes.docker(nodes.manager, "node", "update", "--availability", "active", first)
        power_off(nodes.worker)
        out, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
        subprocess.run([str(SCRIPT), "up"], capture_output=True, check=False)
    assert run.returncode == 0, out
    final = cluster.result("task-001")
    assert (final.status, final.attempt) == ("success", 2), final
    assert cluster.job_node("task-001", 1) == second and cluster.job_node("task-001", 2) == first
    lost = read_model(cluster.layout.archived_result_file("task-001", 1), Result, "task-001")
    assert lost.status == "failed", lost
    mirror = mirror_dir(cluster.layout, str(tmp_path / "remote.git"))
    assert show(mirror, "orchestrator/task-001", "survived.txt") == "survived\n", out


def simulated_task(cluster: Cluster, task_id: str) -> None:
    """Create, spawn (simulated) and wait for one task; it must succeed."""
    assert cluster.orchestrator("task", "create", "--id", task_id, "Add dark mode support").returncode == 0
    spawned = cluster.orchestrator("spawn", "--simulate", "default", task_id)
    assert spawned.returncode == 0, spawned.stderr
    waited = cluster.orchestrator("wait", task_id, "--timeout", "200")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert cluster.result(task_id).status == "success"


def test_after_a_swarm_leave_the_gateway_and_the_scripted_model_repair_themselves(
    swarm_nodes: SwarmNodes, tmp_path: Path
) -> None:
    """On node3's engine as a plain Docker engine (the main engine is left alone): a simulated
    run, ``docker swarm leave`` (the containers on the root's network lose their names), and
    the next run reconnects them and succeeds. node3 joins the swarm again afterwards."""
    nodes, node = swarm_nodes, swarm_nodes.worker
    root = nodes.shared / f"root-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    old_id = nodes.docker(node, "info", "--format", "{{.Swarm.NodeID}}").strip()
    env = {**{k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "ORCHESTRATOR_NETWORK")},
           "DOCKER_HOST": node.socket, "ORCHESTRATION_DIR": str(root), "ORCHESTRATOR_BACKEND": "docker",
           "ORCHESTRATOR_WORKER_IMAGE": IMAGE, "REPO_URL": str(make_remote(tmp_path)),
           "ORCHESTRATOR_PROFILES": str(tmp_path / "profiles.yaml")}
    (tmp_path / "profiles.yaml").write_text(f"default:\n  image: {IMAGE}\n  memory: 512m\n  cpus: 0.5\n")
    cluster = Cluster(nodes, Layout(root), env)
    model = f"orchestrator-scripted-model-{docker_scope(root)}"
    gateway = f"orchestrator-gateway-{docker_scope(root)}"
    resolve = f"import socket; socket.getaddrinfo('{model}', 8080)"
    try:
        simulated_task(cluster, "before")
        nodes.docker(node, "swarm", "leave", "--force")
        broken = subprocess.run(["docker", "-H", node.socket, "exec", gateway, "python3", "-c",
                                 resolve], capture_output=True, text=True, check=False)
        assert broken.returncode != 0 and "name resolution" in broken.stderr, broken.stderr
        wait_for("the gateway's health check to notice", lambda: nodes.docker(
            node, "inspect", gateway, "--format", "{{.State.Health.Status}}").strip() == "unhealthy")
        doctor = json.loads(cluster.orchestrator("doctor", "--simulate", "--json").stdout)
        [check] = [c for c in doctor["checks"] if c["name"] == "gateway"]
        assert not check["ok"] and check["message"].startswith(f"The gateway {gateway} is unhealthy")
        assert "the next 'orchestrator run' or 'spawn' reconnects it" in check["message"]
        simulated_task(cluster, "after")  # the gateway and the model reconnected: it succeeds
        healthy = subprocess.run(["docker", "-H", node.socket, "exec", gateway, "python3", "-c",
                                  resolve], capture_output=True, text=True, check=False)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        cluster.orchestrator("cleanup", "--all", "--gateway", "--simulation")
        subprocess.run([str(SCRIPT), "up"], capture_output=True, check=False)
        nodes.docker(nodes.manager, "node", "rm", "--force", old_id, check=False)
