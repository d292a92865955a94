"""``--backend swarm`` on a real single-node swarm that this module makes and leaves.

The module's fixture runs ``docker swarm init`` (only when the engine is in no swarm) and
``docker swarm leave --force`` at the end, and uses containers, a network and an image tag of its
own made after the init: after a ``swarm leave`` every container then on a user-defined network
has lost its embedded-DNS name (other containers cannot resolve it) until it is reconnected, so
the fixture reconnects the ones other tests reach by name, and removes its own.

Workers are Swarm ``replicated-job`` services; the gateway (``global``) and the scripted model
are services of the same swarm. Tasks use ``agent: command`` unless a test is about the scripted model
(``--simulate``), which runs the real ``claude`` binary.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration_protocol import Layout, Result, read_model
from orchestration_protocol.mirrors import mirror_dir
from tests.conftest import docker_scope, docker_worker, require
from tests.gitrepo import make_remote, show
from tests.manager.test_manager_docker import VENV_BIN, branches, running_tasks, wait_until
from tests.security.test_isolation_docker import PROBES, write_done_task

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

SOURCE_IMAGE = os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker"
IMAGE = "claude-worker-swarm-test"
"""A tag of the worker image: the scripted model container is then this module's own."""
NETWORK = "orchestrator-swarm-test-net"
HOST_PORT = 18766


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def swarm_state(client) -> str:
    return str(client.info().get("Swarm", {}).get("LocalNodeState") or "inactive")


def restore_dns_names(client) -> None:
    """Reconnect every running container on a user-defined network (but workers and gateways,
    which nobody reaches by name): after ``swarm leave`` that gives back its DNS name."""
    from docker.errors import APIError

    for container in client.containers.list(filters={"status": "running"}):
        if (container.labels or {}).get("orchestrator.role") in ("worker", "gateway"):
            continue
        for name, attached in container.attrs["NetworkSettings"]["Networks"].items():
            if name in ("bridge", "host", "none"):
                continue
            try:
                network = client.networks.get(name)
                network.disconnect(container)
                network.connect(container, aliases=attached.get("Aliases") or None)
            except APIError:
                continue


@pytest.fixture(scope="module")
def swarm(docker_client, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A single-node swarm (made here unless the engine is in one), this module's image tag and
    network; the doctor's answer from before the init."""
    try:
        docker_client.images.get(SOURCE_IMAGE).tag(IMAGE)
    except Exception:
        require(False, f"the {SOURCE_IMAGE} image is missing; build it with scripts/build-images.sh --offline")
    state = swarm_state(docker_client)
    before = {"doctor": "", "run": ""}
    if state == "inactive":
        root = tmp_path_factory.mktemp("doctor") / "orchestration"
        before["doctor"] = subprocess.run(
            [str(VENV_BIN / "orchestrator"), "--root", str(root), "--backend", "swarm", "doctor", "--simulate", "--json"],
            capture_output=True, text=True, env={**os.environ, "ORCHESTRATOR_WORKER_IMAGE": IMAGE},
        ).stdout
        run = subprocess.run(
            [str(VENV_BIN / "orchestrator"), "--root", str(root), "--backend", "swarm", "run", "--simulate", "true"],
            capture_output=True, text=True, env={**os.environ, "ORCHESTRATOR_WORKER_IMAGE": IMAGE},
        )  # fmt: skip
        started = docker_client.containers.list(all=True, filters={"label": f"orchestrator.root=bind:{root}"})
        before["run"] = f"{run.returncode} {len(started)} {run.stderr.strip()}"
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    else:
        require(docker_client.info()["Swarm"].get("ControlAvailable"), "this engine is a swarm worker, not a manager")
    docker("network", "create", "--driver", "overlay", "--attachable", NETWORK)  # services join it
    try:
        yield before
    finally:
        if state == "inactive":
            docker("swarm", "leave", "--force", check=False)
            restore_dns_names(docker_client)
        docker("network", "rm", NETWORK, check=False)
        docker("rmi", IMAGE, check=False)  # the tag only: the image stays


@pytest.fixture
def env(swarm, docker_client, tmp_path: Path, layout: Layout, monkeypatch) -> Iterator[dict[str, str]]:
    """Environment for ``orchestrator --backend swarm``: this test's root, a remote, profiles."""
    remote = make_remote(tmp_path)
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(f"default:\n  image: {IMAGE}\n  memory: 512m\n  cpus: 1\n")
    values = {
        "ORCHESTRATION_DIR": str(layout.root),
        "ORCHESTRATOR_PROFILES": str(profiles),
        "ORCHESTRATOR_BACKEND": "swarm",
        "ORCHESTRATOR_WORKER_IMAGE": IMAGE,
        "ORCHESTRATOR_NETWORK": NETWORK,
        "ORCHESTRATOR_HEARTBEAT_S": "1",
        "REPO_URL": str(remote),
    }
    for name in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_BASE_URL", "ORCHESTRATOR_VOLUME",
                 "ORCHESTRATOR_SIMULATE", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    yield {**{k: v for k, v in os.environ.items() if k not in values}, **values}
    label = f"orchestrator.root=bind:{layout.root.resolve()}"
    for service in docker_client.services.list(filters={"label": label}):
        service.remove()
    from docker.errors import APIError

    def containers_gone() -> bool:  # Swarm removes a job's containers itself, in its own time
        for container in docker_client.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(APIError):
                container.remove(force=True)
        return not docker_client.containers.list(all=True, filters={"label": label})

    wait_until(containers_gone, 90, "the root's containers gone")
    for network in docker_client.networks.list(filters={"label": label}):
        with contextlib.suppress(APIError):  # a leaving endpoint: the swarm's leave takes it
            network.remove()


def orchestrator(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "orchestrator"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def result_of(layout: Layout, task_id: str) -> Result:
    return read_model(layout.result_file(task_id), Result, task_id)


def services_of(client, task_id: str) -> list:
    return client.services.list(filters={"label": f"orchestrator.task={task_id}"})


def test_doctor_says_how_to_make_this_engine_a_swarm_manager(swarm, env) -> None:
    if swarm["doctor"]:  # the engine was no swarm when the module began
        checks = {check["name"]: check for check in json.loads(swarm["doctor"])["checks"]}
        assert not checks["swarm"]["ok"]
        assert checks["swarm"]["message"] == (
            "This Docker engine is not a swarm manager (swarm: inactive); run 'docker swarm init' "
            "here (or point DOCKER_HOST at a manager), or use --backend docker."
        )
        # a spawning command stops at the same sentence before it starts anything (no gateway)
        assert swarm["run"].startswith("3 0 error: This Docker engine is not a swarm manager")
    doctor = json.loads(orchestrator(env, "doctor", "--simulate", "--json").stdout)
    checks = {check["name"]: check for check in doctor["checks"]}
    assert doctor["ok"], doctor
    assert checks["swarm"]["message"].startswith("swarm manager of 1 node(s)")


def test_a_simulated_run_as_swarm_jobs_with_status_logs_and_cleanup(
    env: dict[str, str], layout: Layout, tmp_path: Path, docker_client
) -> None:
    done = orchestrator(env, "run", "--simulate", "-n", "2", "--json", "Add dark mode support", "sleep 1")
    assert done.returncode == 0, done.stdout + done.stderr
    dark, sleepy = result_of(layout, "task-001"), result_of(layout, "task-002")
    assert dark.status == "success" and (dark.cost_usd or 0) > 0 and dark.num_turns
    assert any(name.startswith("simulated-") for name in dark.files_changed)
    assert sleepy.output.startswith("Slept 1 seconds")
    assert "orchestrator/task-001" in branches(layout, tmp_path / "remote.git")

    [service] = services_of(docker_client, "task-001")
    spec = service.attrs["Spec"]
    container_spec, template = spec["TaskTemplate"]["ContainerSpec"], spec["TaskTemplate"]
    assert spec["Name"] == f"worker-{docker_scope(layout.root)}-task-001-attempt-1" and "ReplicatedJob" in spec["Mode"]
    assert template["RestartPolicy"]["Condition"] == "none"
    assert template.get("Placement", {}).get("Constraints", []) == []  # any node: each has a gateway
    assert container_spec["User"] == "0:0" and container_spec["CapabilityDrop"] == ["ALL"]
    assert set(container_spec["CapabilityAdd"]) == {
        f"CAP_{cap}" for cap in ("SETUID", "SETGID", "CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL")
    }
    assert container_spec["Command"][:2] == ["setpriv", "--no-new-privs"]
    assert template["Resources"]["Limits"] == {"MemoryBytes": 512 * 1024**2, "NanoCPUs": 10**9, "Pids": 1024}
    assert container_spec["Labels"]["orchestrator.task"] == "task-001"
    assert spec["Labels"]["orchestrator.role"] == "worker" and spec["Labels"]["orchestrator.attempt"] == "1"
    [attachment] = template["Networks"]
    network = docker_client.networks.get(attachment["Target"])
    assert network.attrs["Internal"] and network.attrs["Driver"] == "overlay"
    [task] = service.tasks()
    assert task["Status"]["State"] == "complete"
    container = docker_client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
    assert list(container.attrs["NetworkSettings"]["Networks"]) == [network.name]

    status = json.loads(orchestrator(env, "status", "--json").stdout)
    states = {task["id"]: task["state"] for task in status["tasks"]}
    assert states == {"task-001": "success", "task-002": "success"}
    worker_log = orchestrator(env, "logs", "task-002", "--worker")
    assert worker_log.returncode == 0 and "result: success" in worker_log.stdout, worker_log
    assert "Slept 1 seconds" in orchestrator(env, "logs", "task-002").stdout

    cleaned = json.loads(orchestrator(env, "cleanup", "--json").stdout)
    assert sorted(cleaned["removed"]) == [docker_worker(layout.root, "task-001"), docker_worker(layout.root, "task-002")]
    assert not services_of(docker_client, "task-001") and not services_of(docker_client, "task-002")
    wait_until(lambda: not docker_client.networks.list(names=[network.name]), 20, "the network removed")
    assert orchestrator(env, "status", "--json").returncode == 0


def test_cancel_stops_a_swarm_job_and_spawn_refuses_a_running_one(
    env: dict[str, str], layout: Layout, docker_client
) -> None:
    orchestrator(env, "task", "create", "--id", "long", "--agent", "command", "sleep 120")
    spawned = orchestrator(env, "spawn", "default", "long")
    assert spawned.returncode == 0 and f"started {docker_worker(layout.root, 'long')}" in spawned.stdout, spawned.stderr
    wait_until(lambda: running_tasks(layout) == ["long"], 90, "the worker running")
    again = orchestrator(env, "spawn", "default", "long")
    assert again.returncode != 0 and "Task long is running" in again.stderr, again.stderr
    cancelled = orchestrator(env, "task", "cancel", "long")
    assert cancelled.returncode == 0, cancelled.stderr
    wait_until(lambda: layout.result_file("long").exists(), 30, "the cancelled result")
    assert result_of(layout, "long").status == "cancelled"
    [service] = services_of(docker_client, "long")
    wait_until(lambda: service.tasks()[0]["Status"]["State"] in ("complete", "failed"), 30, "the job ended")
    removed = json.loads(orchestrator(env, "cleanup", "--json").stdout)["removed"]
    assert removed == [docker_worker(layout.root, "long")]

    orchestrator(env, "task", "create", "--id", "longer", "--agent", "command", "sleep 120")
    assert orchestrator(env, "spawn", "default", "longer").returncode == 0
    wait_until(lambda: running_tasks(layout) == ["longer"], 90, "the second worker running")
    removed = json.loads(orchestrator(env, "cleanup", "--all", "--json").stdout)["removed"]
    assert removed == [docker_worker(layout.root, "longer")] and not services_of(docker_client, "longer")
    assert result_of(layout, "longer").status == "cancelled"  # stopped: SIGTERM, then its result


def test_a_killed_worker_is_found_from_its_swarm_task_failed_then_retried(
    env: dict[str, str], layout: Layout, docker_client
) -> None:
    run = subprocess.Popen(
        [str(VENV_BIN / "orchestrator"), "run", "--agent", "command", "--retries", "1", "-n", "2", "sleep 6 && echo one", "sleep 6 && echo two"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until(lambda: len(running_tasks(layout)) >= 1, 90, "a running worker")
    except AssertionError:
        run.kill()
        run.communicate()
        raise
    victim = running_tasks(layout)[0]
    [service] = services_of(docker_client, victim)
    container_id = service.tasks()[0]["Status"]["ContainerStatus"]["ContainerID"]
    docker("kill", container_id)
    out, _ = run.communicate(timeout=180)
    assert run.returncode == 0, out
    first = read_model(layout.archived_result_file(victim, 1), Result, victim)
    assert (first.status, first.exit_code, first.worker_id) == ("failed", 137, "manager")
    assert "SIGKILL" in (first.error or "")
    assert service.tasks()[0]["Status"]["State"] == "failed"  # what the manager read
    final = result_of(layout, victim)
    assert (final.status, final.attempt) == ("success", 2)
    names = sorted(s.name for s in services_of(docker_client, victim))
    assert names == [f"{docker_worker(layout.root, victim)}-attempt-{n}" for n in (1, 2)]
    states = {t["id"]: t["state"] for t in json.loads(orchestrator(env, "status", "--json").stdout)["tasks"]}
    assert set(states.values()) == {"success"}
    log = orchestrator(env, "logs", victim, "--worker")
    assert "result: success" in log.stdout


NETWORK_PROBES = f"""
probe() {{ name=$1; shift; if sh -c "$*" >/dev/null 2>&1; then echo "$name ALLOWED"; else echo "$name refused"; fi; }}
printf 'import socket, sys\\nsocket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\\n' > /tmp/reach.py
probe host-port "python3 /tmp/reach.py 172.17.0.1 {HOST_PORT}"
probe host-port-by-network-gateway "python3 /tmp/reach.py $(cat gateway-ip.txt) {HOST_PORT}"
probe internet "python3 /tmp/reach.py 1.1.1.1 443"
probe resolve-a-name "getent hosts example.com"
probe gain-group-shadow "chage -l $(id -un)"
grep -E '^(NoNewPrivs|CapEff|CapBnd)' /proc/self/status
ls /sys/class/net | tr '\\n' ' '; echo
cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max
"""


@pytest.fixture
def host_listener() -> Iterator[list[tuple[str, int]]]:
    """A TCP port every address of the host listens on; who reached it."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", HOST_PORT))
    server.listen(8)
    reached: list[tuple[str, int]] = []

    def accept() -> None:
        while True:
            try:
                peer, address = server.accept()
            except OSError:
                return
            reached.append(address)
            peer.close()

    threading.Thread(target=accept, daemon=True).start()
    yield reached
    server.close()


def test_a_hostile_agent_in_a_swarm_job_gets_no_protocol_network_or_privilege_and_an_honest_one_succeeds(
    env: dict[str, str], layout: Layout, tmp_path: Path, docker_client, host_listener
) -> None:
    remote = tmp_path / "remote.git"
    gateway_ip = docker_client.networks.get(NETWORK).attrs["IPAM"]["Config"][0]["Gateway"]
    write_done_task(layout)
    orchestrator(env, "task", "create", "--id", "honest", "--agent", "command", "sleep 2; echo hello > hello.txt")
    hostile = f"echo {gateway_ip} > gateway-ip.txt; {{ {PROBES} {NETWORK_PROBES} }} > probes.txt 2>&1"
    orchestrator(env, "task", "create", "--id", "hostile", "--agent", "command", hostile)
    done = orchestrator(env, "dispatch", "--until-done", "-n", "2")
    assert done.returncode == 0, done.stdout + done.stderr

    assert result_of(layout, "honest").status == "success"
    assert show(mirror_dir(layout, str(remote)), "orchestrator/honest", "hello.txt") == "hello\n"
    probes = show(mirror_dir(layout, str(remote)), "orchestrator/hostile", "probes.txt")
    assert "ALLOWED" not in probes, probes
    assert probes.count("refused") == 12 + 5, probes
    assert "NoNewPrivs:\t1" in probes and "CapEff:\t0000000000000000" in probes, probes
    assert "eth0 lo" in probes and "\n1024\n" in probes, probes
    assert host_listener == []
    assert result_of(layout, "hostile").status == "success"
    networks = [s.attrs["Spec"]["TaskTemplate"]["Networks"] for t in ("honest", "hostile") for s in services_of(docker_client, t)]
    assert len(networks) == 2 and networks[0] != networks[1]  # no worker sees another
    assert not layout.task_file("evil").exists()
    assert result_of(layout, "done").output == "private output"
    assert not list(layout.root.glob("PWNED-*"))


def test_a_job_its_node_rejects_ends_failed_with_the_reason_and_is_not_respawned(
    env: dict[str, str], layout: Layout, docker_client
) -> None:
    profiles = Path(env["ORCHESTRATOR_PROFILES"])
    profiles.write_text(profiles.read_text() + f"broken:\n  image: {IMAGE}\n  mounts: ['/nonexistent-swarm-test:/data']\n")
    orchestrator(env, "task", "create", "--id", "rejected", "--profile", "broken", "--agent", "command", "true")
    done = orchestrator(env, "dispatch", "--until-done", "-n", "1", timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    result = result_of(layout, "rejected")
    assert (result.status, result.attempt, result.worker_id) == ("failed", 1, "manager")
    assert "bind source path does not exist" in (result.error or ""), result.error
    [service] = services_of(docker_client, "rejected")
    assert service.tasks()[0]["Status"]["State"] == "rejected"


def test_a_manager_killed_and_restarted_mid_run_finds_its_jobs_and_runs_each_task_once(
    env: dict[str, str], layout: Layout, docker_client
) -> None:
    ids = [f"task-{n:03d}" for n in range(1, 4)]
    first = subprocess.Popen(
        [str(VENV_BIN / "orchestrator"), "run", "--agent", "command", "-n", "3",
         *["sleep 4 && echo $ORCHESTRATOR_TASK_ID > out.txt" for _ in ids]],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: len(running_tasks(layout)) >= 2, 90, "running workers")
    finally:
        first.kill()
    first.communicate()
    second = orchestrator(env, "dispatch", "--until-done", "-n", "3", timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    for task_id in ids:
        result = result_of(layout, task_id)
        assert (result.status, result.attempt) == ("success", 1)
        assert [p.name for p in layout.claim_dir(task_id).iterdir()] == ["1.json"]
        assert [s.name for s in services_of(docker_client, task_id)] == [f"{docker_worker(layout.root, task_id)}-attempt-1"]
