"""The agent cannot touch the protocol: hostile ``agent: command`` tasks in real worker
containers, started as the Docker backend starts them, each refused, beside an honest task that
still succeeds. What a hostile task finds is committed on its branch, as an attacker would try to
carry it out; the test reads it back from the volume's mirror."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration_protocol import Layout, Task, write_task
from orchestration_protocol.mirrors import mirror_dir
from tests.gitrepo import show
from tests.worker.test_worker_docker import containers, result_of, run_worker, shared, worker_image

pytestmark = [pytest.mark.docker, pytest.mark.e2e]
__all__ = ["containers", "shared", "worker_image"]

VOLUME = "/runtime/orchestration"
PROBES = f"""
V={VOLUME}
probe() {{ name=$1; shift; if sh -c "$*" >/dev/null 2>&1; then echo "$name ALLOWED"; else echo "$name refused"; fi; }}
probe list-volume "ls $V/tasks"
probe write-other-result "echo '{{\\"task_id\\":\\"honest\\",\\"status\\":\\"success\\",\\"completed_at\\":\\"2026-01-01T00:00:00Z\\"}}' > $V/results/honest.json"
probe create-task "echo '{{\\"id\\":\\"evil\\",\\"prompt\\":\\"x\\"}}' > $V/tasks/evil.json"
probe read-other-task "cat $V/tasks/honest.json"
probe read-other-log "cat $V/logs/honest.log"
probe read-other-result "cat $V/results/done.json"
probe rewrite-own-status "echo {{}} > $V/status/$ORCHESTRATOR_TASK_ID.json"
probe rewrite-own-claim "echo {{}} > $V/claims/$ORCHESTRATOR_TASK_ID/1.json"
probe through-proc-root "for p in /proc/[0-9]*; do ls \\$p/root$V/tasks && exit 0; done; exit 1"
probe read-runtime-environ "cat /proc/[0-9]*/environ 2>/dev/null | grep -q ORCHESTRATION_DIR"
probe signal-runtime "for p in /proc/[0-9]*; do grep -q '^Uid:[[:space:]]*0[[:space:]]' \\$p/status 2>/dev/null && kill -0 \\${{p#/proc/}} && exit 0; done; exit 1"
probe gain-root "su -c true || sudo true"
"""
GIT_TRAPS = f"""
mkdir -p .git/hooks
printf '#!/bin/sh\\ntouch {VOLUME}/PWNED-hook\\n' > .git/hooks/pre-commit
chmod +x .git/hooks/pre-commit
cp .git/hooks/pre-commit .git/hooks/post-commit
git config core.hooksPath .git/hooks
git config core.fsmonitor 'touch {VOLUME}/PWNED-fsmonitor; false'
git config filter.evil.clean 'touch {VOLUME}/PWNED-filter; cat'
git config alias.add '!touch {VOLUME}/PWNED-alias'
echo '* filter=evil' > .gitattributes
mkdir -p "$HOME" && printf '[core]\\n\\tfsmonitor = touch {VOLUME}/PWNED-home\\n' > "$HOME/.gitconfig"
"""


def write_done_task(layout: Layout) -> None:
    """A finished task with a result the hostile one will try to read."""
    write_task(layout, Task(id="done", prompt="private prompt of another task", agent="command"))
    layout.result_file("done").write_text(
        json.dumps({"task_id": "done", "status": "success", "output": "private output",
                    "completed_at": "2026-01-01T00:00:00Z"})
    )


def test_a_hostile_agent_cannot_touch_the_protocol_and_an_honest_one_succeeds(
    docker_client, worker_image, shared, containers
) -> None:
    layout, remote = shared
    write_done_task(layout)
    write_task(layout, Task(id="honest", prompt="sleep 2; echo hello > hello.txt", agent="command", repo=str(remote)))
    write_task(layout, Task(id="hostile", prompt=f"{{ {PROBES} }} > probes.txt; {GIT_TRAPS}", agent="command", repo=str(remote)))
    honest = run_worker(docker_client, worker_image, layout, remote, "honest", detach=True)
    hostile = run_worker(docker_client, worker_image, layout, remote, "hostile")
    assert honest.wait(timeout=120)["StatusCode"] == 0 and hostile.exit == 0

    assert result_of(layout, "honest").status == "success"
    assert show(mirror_dir(layout, str(remote)), "orchestrator/honest", "hello.txt") == "hello\n"
    probes = show(mirror_dir(layout, str(remote)), "orchestrator/hostile", "probes.txt")
    assert probes.count("refused") == 12, probes
    assert "ALLOWED" not in probes, probes
    assert result_of(layout, "hostile").status == "success"
    assert not layout.task_file("evil").exists()
    assert not list(layout.root.glob("PWNED-*")), "the runtime ran code the agent planted"
    assert result_of(layout, "done").output == "private output"
    assert "private" not in (layout.artifacts_dir("hostile") / "changes.patch").read_text()


@pytest.mark.parametrize(
    ("prompt", "error"),
    [
        ("ln -s /etc etc-link; ln -s /runtime/orchestration volume-link", "points out of the clone"),
        ("ln -s ../../../../etc/passwd passwd", "points out of the clone"),
        ("truncate -s 2G huge.bin", "huge.bin is 2048 MiB, over the limit"),
    ],
    ids=["absolute-symlinks", "relative-escape", "2-GiB-file"],
)
def test_the_runtime_refuses_what_would_make_it_read_outside_the_clone(
    docker_client, worker_image, shared, containers, prompt, error
) -> None:
    layout, remote = shared
    write_task(layout, Task(id="t1", prompt=f"echo fine > fine.txt; {prompt}", agent="command", repo=str(remote)))
    container = run_worker(docker_client, worker_image, layout, remote, "t1")
    assert container.exit == 0, container.logs().decode()
    result = result_of(layout, "t1")
    assert result.status == "failed" and error in (result.error or ""), result.error
    assert not (layout.artifacts_dir("t1") / "changes.bundle").exists()
    assert "orchestrator/t1" not in _branches(mirror_dir(layout, str(remote)))


def _branches(mirror: Path) -> str:
    from tests.gitrepo import git

    return git("for-each-ref", "--format=%(refname)", cwd=mirror)
