"""A hostile agent against the trusted parts: the worker runtime's git, the worker container, the
gateway. Each test is one attack that once worked; the ones marked ``xfail(strict=True)`` still
work and say what the fix is."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.gitrepo import git, make_remote
from tests.test_worker_docker import containers, shared, worker_image
from worker import repo
from worker.errors import WorkerError

__all__ = ["containers", "shared", "worker_image"]
GITLINK = "1234567890123456789012345678901234567890"


def _workspace_with_submodule(tmp_path: Path) -> repo.Workspace:
    """The runtime's clone of a repository whose tree has a submodule at ``sub`` (not checked
    out, as in every worker's clone)."""
    remote = make_remote(tmp_path)
    seed = tmp_path / "seed"
    git("update-index", "--add", "--cacheinfo", f"160000,{GITLINK},sub", cwd=seed)
    git("-c", "user.name=a", "-c", "user.email=b@c", "commit", "-qm", "submodule", cwd=seed)
    git("push", "-q", str(remote), "main", cwd=seed)
    mirror = tmp_path / "mirror.git"
    git("clone", "-q", "--bare", str(remote), str(mirror))
    workspace = repo.Workspace(private=tmp_path / "private", agent_root=tmp_path / "agent")
    workspace.private.mkdir()
    workspace.agent_root.mkdir()
    repo.prepare(workspace, mirror, str(remote), None, "t1", None)
    return workspace


def test_a_repository_planted_at_a_submodule_path_runs_no_code_in_the_runtime(
    tmp_path: Path,
) -> None:
    """The agent turns the (empty) submodule directory into a repository of its own, with a
    clean filter in its config. ``git add --all`` in the runtime's repository runs ``git
    status`` in a submodule whose HEAD matches the gitlink, which loads that config and runs the
    filter: as root, with DAC_OVERRIDE, in a worker container."""
    workspace = _workspace_with_submodule(tmp_path)
    base = git("rev-parse", "HEAD", cwd=workspace.work_tree).strip()
    marker = tmp_path / "PWNED"
    sub = workspace.work_tree / "sub"
    git("init", "-q", str(sub))
    (sub / "f").write_text("x\n")
    git("add", "f", cwd=sub)
    (sub / ".gitattributes").write_text("* filter=evil\n")
    git("config", "filter.evil.clean", f"touch {marker}; cat", cwd=sub)
    (sub / ".git" / "HEAD").write_text(GITLINK + "\n")
    time.sleep(1.1)  # the index entry of f goes stale, so status must hash f again
    (sub / "f").write_text("y\n")

    with pytest.raises(WorkerError, match="nested git repository at sub"):
        repo.check_work_tree(workspace, repo.Limits())
        repo.commit_all(workspace, "m", base)
    assert not marker.exists(), "the runtime ran the agent's filter"


def test_a_git_file_pointing_elsewhere_is_refused_too(tmp_path: Path) -> None:
    """A ``.git`` file (``gitdir: ...``) in a subdirectory makes git read another repository."""
    workspace = _workspace_with_submodule(tmp_path)
    elsewhere = tmp_path / "elsewhere.git"
    git("init", "-q", "--bare", str(elsewhere))
    (workspace.work_tree / "other").mkdir()
    (workspace.work_tree / "other" / ".git").write_text(f"gitdir: {elsewhere}\n")
    with pytest.raises(WorkerError, match="nested git repository at other"):
        repo.check_work_tree(workspace, repo.Limits())


def test_an_untouched_submodule_directory_is_fine(tmp_path: Path) -> None:
    workspace = _workspace_with_submodule(tmp_path)
    (workspace.work_tree / "new.txt").write_text("new\n")
    repo.check_work_tree(workspace, repo.Limits())
    base = git("rev-parse", "HEAD", cwd=workspace.work_tree).strip()
    summary = repo.commit_all(workspace, "m", base)
    assert summary.files_changed == ["new.txt"]


# --- in a real worker container ---------------------------------------------------------------

LINGER = (
    "setsid sh -c 'while :; do for d in /tmp/agent-second-*/repo; do "
    '[ -d "$d" ] && echo planted-by-first > "$d/planted.txt"; done; sleep 0.1; done\' '
    "</dev/null >/dev/null 2>&1 & echo left a helper behind"
)


@pytest.mark.docker
@pytest.mark.e2e
def test_nothing_the_agent_started_outlives_it_into_the_next_task(
    docker_client: Any, worker_image: str, shared: tuple[Any, Path], containers: None
) -> None:
    """A pool worker runs one task after another in one container, each agent as uid 1000. The
    first agent leaves a helper in a session of its own (out of reach of the process-group
    kill); unless every process of the agent's uid is killed when the agent ends, the helper
    writes into the next task's work tree (and could read its caller token from
    ``/proc/<pid>/environ``), and races the runtime's check against its commit."""
    from datetime import timedelta

    from orchestration_protocol import Task, utc_now, write_task
    from orchestration_protocol.mirrors import mirror_dir
    from tests.gitrepo import show
    from tests.test_worker_docker import result_of, run_worker

    layout, remote = shared
    now = utc_now()
    write_task(layout, Task(id="first", prompt=LINGER, agent="command", repo=str(remote),
                            created_at=now - timedelta(seconds=10)))
    write_task(layout, Task(id="second", prompt="sleep 3; echo mine > mine.txt", agent="command",
                            repo=str(remote), created_at=now))
    container = run_worker(docker_client, worker_image, layout, remote, "first", pool=True)
    assert container.exit == 0, container.logs().decode()
    assert result_of(layout, "first").status == "success"
    second = result_of(layout, "second")
    assert second.status == "success", second.error
    assert second.files_changed == ["mine.txt"], "the first task's helper wrote into the second's tree"
    assert show(mirror_dir(layout, str(remote)), "orchestrator/second", "mine.txt") == "mine\n"


@pytest.mark.docker
@pytest.mark.e2e
def test_a_planted_submodule_repository_runs_nothing_as_root_in_the_container(
    docker_client: Any, worker_image: str, shared: tuple[Any, Path], containers: None
) -> None:
    """The same attack as above in a worker container, where the runtime's git runs as root
    with DAC_OVERRIDE: the agent's filter would write into the volume (and could rewrite any
    task's result, the ledger, or the mirror's main branch)."""
    from orchestration_protocol import Task, write_task
    from orchestration_protocol.mirrors import mirror_dir
    from tests.test_worker_docker import result_of, run_worker

    layout, remote = shared
    seed = remote.parent / "seed"
    git("update-index", "--add", "--cacheinfo", f"160000,{GITLINK},sub", cwd=seed)
    git("-c", "user.name=a", "-c", "user.email=b@c", "commit", "-qm", "submodule", cwd=seed)
    git("push", "-q", str(mirror_dir(layout, str(remote))), "main", cwd=seed)
    plant = (
        "cd sub && git init -q . && echo x > f && git add f && echo '* filter=evil' > "
        ".gitattributes && git config filter.evil.clean 'id -u > /runtime/orchestration/PWNED; "
        f"cat' && echo {GITLINK} > .git/HEAD && sleep 1.1 && echo y > f"
    )
    write_task(layout, Task(id="t1", prompt=plant, agent="command", repo=str(remote)))
    container = run_worker(docker_client, worker_image, layout, remote, "t1")
    assert container.exit == 0, container.logs().decode()
    assert not (layout.root / "PWNED").exists(), "the agent's filter ran in the runtime as root"
    result = result_of(layout, "t1")
    assert result.status == "failed" and "nested git repository at sub" in (result.error or "")


# --- the gateway ------------------------------------------------------------------------------


def test_requests_queued_for_an_upstream_slot_cannot_spend_past_the_budget(
    tmp_path: Path,
) -> None:
    """The budget was checked when a request arrived, before it waited for an upstream slot: a
    hostile agent fires many requests at once, they all pass the check while the ledger is
    still empty, and each is sent upstream (and paid) later, one after another."""
    import threading

    from orchestration_protocol import Layout
    from orchestration_protocol.gateway import read_ledger
    from scripted_model import ScriptedModelServer
    from tests.gateway_helpers import (
        REAL_KEY,
        GatewayProcess,
        api_client,
        claim_caller,
        message_body,
        write_secret,
    )

    layout = Layout(tmp_path / "orchestration").ensure()
    secrets = write_secret(tmp_path / "secrets")
    caller = claim_caller(layout, "greedy", max_budget_usd=0.003)  # one could cost $0.0028
    statuses: list[int] = []

    def one() -> None:
        with api_client(layout) as client:
            response = client.post("/v1/messages", json=message_body(),
                                   headers={"x-api-key": caller.token})
            statuses.append(response.status_code)

    with (ScriptedModelServer(require_key=REAL_KEY, event_delay_s=0.1) as model,
          GatewayProcess(layout, model.url, secrets, ["--concurrency", "1"])):
        threads = [threading.Thread(target=one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    ledger = read_ledger(layout, "greedy")
    assert sum(entry.cost_usd for entry in ledger) <= 0.003
    assert sorted(statuses) == [200, 200, 403, 403, 403, 403], statuses  # each held before sent


def test_nobody_can_write_a_line_of_their_own_into_the_gateways_log(tmp_path: Path) -> None:
    """Without any token: a bare newline in the egress request's method (the request line is
    split on spaces only, and the method is logged as it came) made a line of its own in the
    gateway's log, which reads as the record of who did what; the same method would have been
    sent on to an allowed host as it was (a request split in two)."""
    from orchestration_protocol import Layout
    from tests.gateway_helpers import GatewayProcess, proxy_exchange

    layout = Layout(tmp_path / "orchestration").ensure()
    forged = b"GATEWAY:\tTASK=VICTIM\tALLOWED"
    with GatewayProcess(layout, "http://127.0.0.1:9", tmp_path / "no-secrets") as process:
        answer = proxy_exchange(layout, b"GET\n" + forged + b" http://example.com/ HTTP/1.1\r\n\r\n")
        header = proxy_exchange(layout, b"GET http://example.com/ HTTP/1.1\r\nX: a\nHost: b\r\n\r\n")
        process.stop()
    lines = process.stderr.splitlines()
    assert all(line.startswith("gateway: ") for line in lines), process.stderr
    assert answer.startswith(b"HTTP/1.1 400 ") and header.startswith(b"HTTP/1.1 400 "), answer
