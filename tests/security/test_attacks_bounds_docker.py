"""Issue 16, attacks 5-9 and the caller token: hostile ``agent: command`` tasks in worker
containers started with the Docker backend's own options (``DockerWorkers._hardened``: no
network, the runtime's capabilities, an init, a read-only root with a sized ``/tmp``, rotated
Docker logs), each beside an honest task that still succeeds. Sizes are shrunk with the worker's
settings so the attacks stay quick."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from manager.backends.config import DockerConfig
from manager.backends.docker import DockerConnection, DockerWorkers
from manager.backends.docker.doctor import DockerNames
from manager.profiles import Profile
from orchestration_protocol import Layout, Task, write_task
from orchestration_protocol.mirrors import mirror_dir
from tests.gitrepo import git, show
from tests.worker.test_worker_docker import containers, result_of, shared, worker_image

pytestmark = [pytest.mark.docker, pytest.mark.e2e]
__all__ = ["containers", "shared", "worker_image"]
MiB = 1024 * 1024


def start_worker(
    docker_client: Any, image: str, layout: Layout, task_id: str, env: dict[str, str] | None = None
) -> Any:
    """``orchestrator-worker --task`` in a container made from the backend's options."""
    connection = DockerConnection(
        DockerConfig(root=layout.root, volume=str(layout.root), worker_image=image), docker_client
    )
    workers, names = DockerWorkers(connection), DockerNames(connection)
    profile = Profile(name="default", image=image, memory="1g", pids_limit=256)
    name = f"worker-{task_id}-{secrets.token_hex(3)}"
    env = {
        "WORKER_ID": name,
        "ORCHESTRATOR_HEARTBEAT_S": "0.5",
        **names.worker_env(name, profile),
        **(env or {}),
    }
    kwargs = workers._hardened(
        name, profile, env, (), {"orchestrator.test": "worker"}, ["--task", task_id]
    )
    container = docker_client.containers.create(**{**kwargs, "detach": True})
    container.start()
    return container


def run(docker_client: Any, image: str, layout: Layout, task_id: str, **env: str) -> Any:
    container = start_worker(docker_client, image, layout, task_id, env)
    container.exit = container.wait(timeout=180)["StatusCode"]
    container.reload()
    return container


def task(layout: Layout, remote: Path, task_id: str, prompt: str) -> None:
    write_task(layout, Task(id=task_id, prompt=prompt, agent="command", repo=str(remote)))


def branches(layout: Layout, remote: Path) -> str:
    return git("for-each-ref", "--format=%(refname)", cwd=mirror_dir(layout, str(remote)))


def assert_refused(layout: Layout, remote: Path, task_id: str, error: str) -> None:
    result = result_of(layout, task_id)
    assert result.status == "failed" and error in (result.error or ""), result.error
    assert not (layout.artifacts_dir(task_id) / "changes.bundle").exists()
    assert f"orchestrator/{task_id}" not in branches(layout, remote)


def test_a_link_through_a_link_to_the_clone_is_resolved_and_refused(
    docker_client, worker_image, shared, containers
) -> None:
    """Attack 5: ``s -> .`` makes ``s/s/s/../../..`` climb out of the clone although the text,
    read lexically, stays inside; in the manager's clone ``leak`` was the host's /etc/passwd."""
    layout, remote = shared
    task(layout, remote, "honest", "echo fine > fine.txt; ln -s . self; ln -s self/self/fine.txt alias")
    hops = "s/" * 8 + "../" * 8
    task(layout, remote, "hostile", f"echo fine > fine.txt; ln -s . s; ln -s {hops}etc/passwd leak")
    assert run(docker_client, worker_image, layout, "hostile").exit == 0
    assert run(docker_client, worker_image, layout, "honest").exit == 0
    assert_refused(layout, remote, "hostile", "The symlink leak points out of the clone")
    assert result_of(layout, "honest").status == "success"
    assert "orchestrator/honest" in branches(layout, remote)


def test_hard_links_count_in_full_against_the_change_cap(
    docker_client, worker_image, shared, containers
) -> None:
    """Attack 6: hard links to one file make one blob, a tiny bundle, and the full size of
    every link in the clone that checks the branch out; the cap counts every path in full."""
    layout, remote = shared
    links = "head -c 20M /dev/zero > big; for i in 1 2 3 4; do ln big link$i; done"
    task(layout, remote, "hostile", links)
    task(layout, remote, "honest", "head -c 20M /dev/zero > big; ln big link1")
    cap = {"ORCHESTRATOR_MAX_CHANGE_BYTES": str(64 * MiB)}
    assert run(docker_client, worker_image, layout, "hostile", **cap).exit == 0
    assert run(docker_client, worker_image, layout, "honest", **cap).exit == 0
    assert_refused(layout, remote, "hostile", "over the limit")
    assert result_of(layout, "honest").status == "success"


def test_output_and_disk_are_bounded_and_the_result_is_still_written(
    docker_client, worker_image, shared, containers
) -> None:
    """Attack 7: 20 MB of 100 kB lines made a result over the readers' 1 MiB limit (shown as
    ``lost``) and a log as big; 2 GB written to /tmp landed on the host's disk."""
    layout, remote = shared
    flood = "head -c 20000000 /dev/zero | tr '\\0' x | fold -w 100000"
    fill = "dd if=/dev/zero of=/tmp/fill bs=1M count=2048 2>&1 | grep -o 'No space left on device'; rm -f /tmp/fill"
    probe = "touch /usr/owned 2>/dev/null && echo root-writable || echo root-read-only"
    task(layout, remote, "hostile", f"{fill}; {probe}; {flood}; echo kept > kept.txt")
    container = run(docker_client, worker_image, layout, "hostile",
                    ORCHESTRATOR_MAX_LOG_BYTES=str(MiB))
    assert container.exit == 0
    result = result_of(layout, "hostile")  # readable: under the readers' limit
    assert result.status == "success", result.error
    assert (result.output or "").startswith("[output cut:")
    assert layout.log_file("hostile").stat().st_size < 2 * MiB
    assert "is not logged" in layout.log_file("hostile").read_text()
    logged = show(mirror_dir(layout, str(remote)), "orchestrator/hostile", "kept.txt")
    assert logged == "kept\n"
    log = layout.log_file("hostile").read_text()
    assert "No space left on device" in log and "root-read-only" in log, log[:2000]
    [sized] = docker_client.api.containers(all=True, size=True, filters={"id": container.id})
    assert sized.get("SizeRw", 0) < 16 * MiB, "the agent wrote to the host's disk"
    log_config = container.attrs["HostConfig"]["LogConfig"]
    assert log_config["Type"] == "json-file" and log_config["Config"].get("max-size")
    task(layout, remote, "honest", "echo hello > hello.txt")
    assert run(docker_client, worker_image, layout, "honest").exit == 0
    assert result_of(layout, "honest").status == "success"


def test_one_endless_line_does_not_kill_the_runtime(
    docker_client, worker_image, shared, containers
) -> None:
    """Attack 8: a 1.2 GB line with no newline was read whole by the runtime (pid 1) in a 1 GiB
    container: the kernel killed it, and the task had no result. The agent, not the runtime, is
    the one the OOM killer takes (its ``oom_score_adj`` is 1000)."""
    layout, remote = shared
    line = "head -c 1200000000 /dev/zero | tr '\\0' a; echo"
    task(layout, remote, "hostile", f"{line}; cat /proc/self/oom_score_adj > adj.txt")
    container = run(docker_client, worker_image, layout, "hostile")
    assert container.exit == 0, container.logs(tail=20)
    result = result_of(layout, "hostile")
    assert result.status == "success", result.error
    assert show(mirror_dir(layout, str(remote)), "orchestrator/hostile", "adj.txt") == "1000\n"
    hog = "python3 -c \"x = b'a' * (3 << 30)\"; echo survived > survived.txt"
    task(layout, remote, "hog", hog)
    assert run(docker_client, worker_image, layout, "hog").exit == 0
    assert result_of(layout, "hog").status == "success"
    assert show(mirror_dir(layout, str(remote)), "orchestrator/hog", "survived.txt") == "survived\n"


def test_orphans_are_reaped_so_git_can_still_fork(
    docker_client, worker_image, shared, containers
) -> None:
    """Attack 9: orphans of the agent became zombies of pid 1 (the runtime, which never reaped
    them) until they filled the pids limit, and the runtime's ``git`` could not start."""
    layout, remote = shared
    orphans = "i=0; while [ $i -lt 300 ]; do (/bin/true &) 2>/dev/null; i=$((i+1)); done"
    task(layout, remote, "hostile", f"{orphans}; echo done > done.txt")
    assert run(docker_client, worker_image, layout, "hostile").exit == 0
    result = result_of(layout, "hostile")
    assert result.status == "success" and result.pushed, result.error
    assert show(mirror_dir(layout, str(remote)), "orchestrator/hostile", "done.txt") == "done\n"


def test_the_caller_token_is_masked_in_the_results_output(
    docker_client, worker_image, shared, containers, tmp_path
) -> None:
    """The caller token was masked in the log and published as it was in ``output``."""
    from tests.gateway_helpers import GatewayProcess

    layout, remote = shared
    task(layout, remote, "hostile", 'echo "key $ANTHROPIC_API_KEY"; echo "proxy $HTTPS_PROXY"')
    with GatewayProcess(layout, "http://127.0.0.1:9", tmp_path / "no-secrets"):
        assert run(docker_client, worker_image, layout, "hostile").exit == 0
    output = result_of(layout, "hostile").output or ""
    assert "key ***" in output.splitlines(), output
    assert "@127.0.0.1" in output and ":***@" in output, output
