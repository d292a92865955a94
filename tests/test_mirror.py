"""The manager's git mirror on the volume, with real git: a local bare repository stands in for
the remote, a temporary directory for the orchestration root. A worker's part (clone from the
mirror, push ``orchestrator/<id>`` into it) is done here with plain git, as the runtime does it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from manager.errors import MirrorUnavailable
from manager.git.access import git_access
from manager.git.merge import merge_tasks
from manager.git.mirror import ensure_mirror, is_mirror
from orchestration_protocol import (
    Layout,
    Result,
    Task,
    read_model,
    try_claim_attempt,
    utc_now,
    write_task,
)
from orchestration_protocol.mirrors import mirror_dir, mirror_name, task_ref
from tests.gitrepo import IDENTITY, branches, git, make_remote, show

TOKEN = "ghp_token-that-must-never-show-0123456789"
SSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAkey-text-never-shown\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
SECRETS = {"GIT_TOKEN": TOKEN, "GIT_SSH_KEY": SSH_KEY}


pytestmark = pytest.mark.usefixtures("cli_process")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path, {"README.md": "# demo app\n", "app.py": "print('hi')\n"})


def commit_on_remote(remote: Path, tmp_path: Path, name: str, text: str) -> str:
    """A new commit on the remote's main; its id."""
    work = tmp_path / f"push-{name}"
    git("clone", "--quiet", str(remote), str(work))
    (work / name).write_text(text)
    git("add", name, cwd=work)
    git(*IDENTITY, "commit", "--quiet", "-m", f"add {name}", cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def worker_pushes(
    mirror: Path, tmp_path: Path, task_id: str, name: str, text: str, attempt: int = 1
) -> str:
    """What the worker runtime does: clone the mirror, commit, push ``orchestrator/<id>``."""
    work = tmp_path / f"worker-{task_id}-{attempt}"
    git("clone", "--quiet", str(mirror), str(work))
    (work / name).write_text(text)
    git("add", name, cwd=work)
    git(*IDENTITY, "commit", "--quiet", "-m", f"{task_id}: add {name}", cwd=work)
    git("push", "--quiet", "--force", "origin", f"HEAD:{task_ref(task_id)}", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def finished_task(layout: Layout, remote: Path, task_id: str, head: str, files: list[str]) -> None:
    """A task with a success result naming ``head`` on ``orchestrator/<id>``."""
    write_task(layout, Task(id=task_id, prompt=f"work on {task_id}", repo=str(remote)))
    handle = try_claim_attempt(layout, task_id, 1, worker_id="worker-test")
    assert handle is not None
    base = git("rev-parse", "main", cwd=remote).strip()
    handle.publish_result(
        Result(
            task_id=task_id,
            status="success",
            completed_at=utc_now(),
            branch=f"orchestrator/{task_id}",
            base_commit=base,
            head_commit=head,
            files_changed=files,
        )
    )


def refs(repo: Path) -> dict[str, str]:
    lines = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=repo).splitlines()
    return dict(line.split(" ", 1) for line in lines)


def volume_bytes(layout: Layout) -> bytes:
    """Every file's content under the orchestration root."""
    return b"".join(path.read_bytes() for path in layout.root.rglob("*") if path.is_file())


def test_mirror_name_is_readable_and_unique_per_url(layout: Layout) -> None:
    ssh = mirror_name("git@github.com:you/app.git")
    https = mirror_name("https://github.com/you/app")
    assert ssh.startswith("app-") and https.startswith("app-") and ssh != https
    assert mirror_name("https://h/we ird/na$me.git").startswith("na-me-")
    assert len(mirror_name("https://h/" + "x" * 100)) == 40 + 1 + 12 + 4
    assert mirror_dir(layout, "/r/app.git") == layout.root / "git" / mirror_name("/r/app.git")


def test_mirror_is_made_then_refreshed(layout: Layout, remote: Path, tmp_path: Path) -> None:
    mirror = ensure_mirror(layout, str(remote), credentials={})
    assert mirror == mirror_dir(layout, str(remote)) and is_mirror(mirror)
    assert git("rev-parse", "--is-bare-repository", cwd=mirror).strip() == "true"
    assert refs(mirror)["refs/heads/main"] == git("rev-parse", "main", cwd=remote).strip()
    assert not [path for path in mirror.parent.iterdir() if path.name.startswith(".")]
    new = commit_on_remote(remote, tmp_path, "new.txt", "new\n")
    git("branch", "feature", "main", cwd=remote)
    assert ensure_mirror(layout, str(remote), credentials={}) == mirror
    assert refs(mirror)["refs/heads/main"] == new
    assert refs(mirror)["refs/heads/feature"] == new
    git("branch", "-D", "feature", cwd=remote)
    ensure_mirror(layout, str(remote), credentials={})
    assert "refs/heads/feature" not in refs(mirror)  # deleted on the remote: gone here too


def test_task_branch_pushed_into_the_mirror_survives_a_refresh(
    layout: Layout, remote: Path, tmp_path: Path
) -> None:
    mirror = ensure_mirror(layout, str(remote), credentials={})
    head = worker_pushes(mirror, tmp_path, "t1", "work.txt", "done\n")
    git("branch", "orchestrator/t1", "main", cwd=remote)  # an older push of the same name
    commit_on_remote(remote, tmp_path, "later.txt", "later\n")
    ensure_mirror(layout, str(remote), credentials={})
    assert refs(mirror)[task_ref("t1")] == head
    assert refs(mirror)["refs/heads/main"] == git("rev-parse", "main", cwd=remote).strip()


def test_a_bad_url_is_one_sentence(layout: Layout, tmp_path: Path) -> None:
    url = str(tmp_path / "missing.git")
    with pytest.raises(MirrorUnavailable) as raised:
        ensure_mirror(layout, url, credentials={})
    message = str(raised.value)
    assert message.startswith(f"Could not mirror {url} (")
    assert message.endswith("check the URL and the manager's GIT_SSH_KEY or GIT_TOKEN.")
    assert "\n" not in message
    assert not mirror_dir(layout, url).exists()
    assert [path.name for path in (layout.root / "git").iterdir()] == [f"{mirror_name(url)}.lock"]


def test_credentials_are_never_in_error_text_or_on_the_volume(layout: Layout) -> None:
    for url in (
        "https://alice:pa55word-in-url@127.0.0.1:9/app.git",
        "ssh://git@127.0.0.1:9/app.git",
    ):
        with pytest.raises(MirrorUnavailable) as raised:
            ensure_mirror(layout, url, credentials=SECRETS)
        message = str(raised.value)
        assert "Could not mirror" in message and "127.0.0.1:9" in message
        for secret in ("pa55word-in-url", TOKEN, "key-text-never-shown"):
            assert secret not in message
    content = volume_bytes(layout)
    for secret in (b"pa55word-in-url", TOKEN.encode(), b"key-text-never-shown"):
        assert secret not in content


def test_the_ssh_key_reaches_ssh_as_a_private_file_only(
    layout: Layout, remote: Path, tmp_path: Path, monkeypatch
) -> None:
    """A stand-in ``ssh`` on PATH records how it was called, then runs git's command locally."""
    bin_dir, record = tmp_path / "bin", tmp_path / "ssh-calls"
    bin_dir.mkdir()
    fake_ssh = bin_dir / "ssh"
    fake_ssh.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            key=""; prev=""
            for arg in "$@"; do [ "$prev" = "-i" ] && key="$arg"; prev="$arg"; last="$arg"; done
            {{ echo "args: $*"; stat -c 'mode: %a' "$key"; cat "$key"; }} >> {record}
            exec sh -c "$last"
            """
        )
    )
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    url = f"ssh://git@git.example.invalid{remote}"
    mirror = ensure_mirror(layout, url, credentials={"GIT_SSH_KEY": SSH_KEY})
    assert refs(mirror)["refs/heads/main"] == git("rev-parse", "main", cwd=remote).strip()
    calls = record.read_text()
    assert "mode: 600" in calls and "key-text-never-shown" in calls
    assert "key-text-never-shown" not in calls.split("\n", 1)[0]  # never an argument
    key_file = calls.split("-i ", 1)[1].split(" ", 1)[0]
    assert not Path(key_file).exists()  # removed with its private directory
    assert b"key-text-never-shown" not in volume_bytes(layout)


def test_the_token_reaches_git_through_a_credential_helper() -> None:
    with git_access({"GIT_TOKEN": TOKEN}) as access:
        done = subprocess.run(
            ["git", "credential", "fill"],
            input="protocol=https\nhost=git.example.invalid\n\n",
            env={**os.environ, **access.env},
            capture_output=True,
            text=True,
            check=True,
        )
        assert f"password={TOKEN}" in done.stdout.splitlines()
        assert all(TOKEN not in value for key, value in access.env.items() if key != "GIT_TOKEN")


def test_two_concurrent_refreshes_are_safe(layout: Layout, remote: Path, tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from manager.git.mirror import ensure_mirror; "
        "from orchestration_protocol import Layout; "
        "print(ensure_mirror(Layout(Path(sys.argv[1])), sys.argv[2], credentials={}))"
    )

    def both() -> list[str]:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(layout.root), str(remote)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [process.communicate(timeout=120) for process in processes]
        assert [process.returncode for process in processes] == [0, 0], outputs
        return [out.strip() for out, _ in outputs]

    mirror = mirror_dir(layout, str(remote))
    assert both() == [str(mirror)] * 2  # both create it at once
    new = commit_on_remote(remote, tmp_path, "new.txt", "new\n")
    head = worker_pushes(mirror, tmp_path, "t1", "work.txt", "done\n")
    assert both() == [str(mirror)] * 2  # both refresh it at once
    git("fsck", "--strict", cwd=mirror)
    assert refs(mirror)["refs/heads/main"] == new and refs(mirror)[task_ref("t1")] == head


def test_merge_finds_a_branch_that_is_only_in_the_mirror(
    layout: Layout, remote: Path, tmp_path: Path
) -> None:
    mirror = ensure_mirror(layout, str(remote), credentials={})
    head = worker_pushes(mirror, tmp_path, "t1", "feature.txt", "dark mode\n")
    finished_task(layout, remote, "t1", head, ["feature.txt"])
    clone = tmp_path / "manager-clone"
    git("clone", "--quiet", str(remote), str(clone))
    report = merge_tasks(layout, clone, None, push=True, credentials=SECRETS)
    assert [(task.outcome.value, task.source) for task in report.tasks] == [("merged", "mirror")]
    assert "orchestrator/t1" not in branches(remote)  # the task branch was never on the remote
    assert show(remote, "orchestrator/integration", "feature.txt") == "dark mode\n"
    assert git("rev-parse", "refs/remotes/mirror/orchestrator/t1", cwd=clone).strip() == head


def test_push_takes_task_branches_from_the_mirror_to_the_remote(
    cli, layout: Layout, remote: Path, tmp_path: Path
) -> None:
    mirror = ensure_mirror(layout, str(remote), credentials={})
    head = worker_pushes(mirror, tmp_path, "t1", "one.txt", "one\n")
    finished_task(layout, remote, "t1", head, ["one.txt"])
    write_task(layout, Task(id="t2", prompt="nothing yet", repo=str(remote)))
    code, out, _ = cli("push", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"]
    assert [(task["task_id"], task["outcome"]) for task in report["tasks"]] == [("t1", "pushed")]
    assert git("rev-parse", "orchestrator/t1", cwd=remote).strip() == head

    code, out, _ = cli("push", "t1", "t2")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"t1: pushed orchestrator/t1 ({head[:12]}) to {remote}."
    assert lines[1].startswith("t2: not found (orchestrator/t2 is not in the mirror of")

    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes refused here' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    worker_pushes(mirror, tmp_path, "t1", "two.txt", "two\n", attempt=2)
    code, out, _ = cli("push", "t1", "--json")
    task = json.loads(out)["tasks"][0]
    assert code == 1 and task["outcome"] == "refused"
    assert "pushes refused here" in task["message"] and "\n" not in task["message"]
    code, _, err = cli("push", "nope")
    assert code == 2 and "No task nope" in err


def test_spawning_mirrors_the_repository_and_a_bad_one_fails_only_its_task(
    cli, layout: Layout, remote: Path, tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.git")
    write_task(layout, Task(id="good", prompt="echo hi > hi.txt", agent="command"))
    write_task(layout, Task(id="bad", prompt="true", agent="command", repo=missing))
    code, _, err = cli("spawn", "default", "bad")
    assert code == 3 and err.startswith(f"error: Could not mirror {missing} (")
    assert not layout.claim_dir("bad").exists()  # the task is untouched: fix it and spawn again
    code, _, _ = cli("dispatch", "--until-done", "-n", "2", "--json")
    assert code == 1
    assert is_mirror(mirror_dir(layout, str(remote)))
    good = read_model(layout.result_file("good"), Result, "good")
    bad = read_model(layout.result_file("bad"), Result, "bad")
    assert good.status == "success"
    assert bad.status == "failed" and bad.error and bad.error.startswith("Could not mirror")


def test_a_worker_started_by_hand_names_the_command_that_makes_the_mirror_and_runs_after_it(
    tmp_path: Path, capsys
) -> None:
    """The manual flow on a host: a root of hand-dropped task files and ``orchestrator-worker
    --root DIR``. With no mirror yet the task fails with the command that makes it; after that
    command the same task (retried by hand) succeeds."""
    from manager.cli import main as orchestrator
    from worker.cli import main as worker

    remote = make_remote(tmp_path)
    root = tmp_path / "manual"
    (root / "tasks").mkdir(parents=True)
    task = {"id": "t1", "prompt": "echo done > done.txt", "agent": "command", "repo": str(remote)}
    (root / "tasks" / "t1.json").write_text(json.dumps({**task, "max_attempts": 2}))
    worker(["--task", "t1", "--root", str(root)])
    first = read_model(Layout(root).result_file("t1"), Result, "t1")
    assert first.status == "failed" and f"'orchestrator --root {root} mirror {remote}'" in (
        first.error or ""
    )
    capsys.readouterr()
    assert orchestrator(["--root", str(root), "mirror", str(remote), "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["mirror"] == str(mirror_dir(Layout(root), str(remote))) and is_mirror(
        Path(made["mirror"])
    )
    worker(["--task", "t1", "--root", str(root)])
    second = read_model(Layout(root).result_file("t1"), Result, "t1")
    assert second.status == "success" and second.files_changed == ["done.txt"]
