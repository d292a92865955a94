"""The manager's pieces without processes or Docker: profiles, plans, progress, recovery rules,
the secrets archive and the engine-failure sentences."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from manager.backends.base import (
    Backend,
    ExitInfo,
    IdleSpawnRequest,
    SpawnRequest,
    WorkerRecord,
    Workers,
)
from manager.backends.config import StubConfig
from manager.backends.docker.engine import describe_docker_failure, find_volume, secrets_archive
from manager.backends.stub import StubDoctor, StubServices
from manager.config import resolve_settings
from manager.credentials import redact
from manager.errors import PlanInvalid, ProfilesInvalid, UnknownProfile, VolumeNotWritable
from manager.profiles import load_profiles, resolve_profile
from manager.run.recovery import recover_ended_worker, recover_lost_task
from manager.tasks.create import create_plan, create_task
from orchestration_protocol import (
    Layout,
    Result,
    ResultStatus,
    Task,
    TaskState,
    claim_task,
    read_board,
    read_model,
    utc_now,
    write_task,
)
from orchestration_views.progress import assess

# --- profiles ----------------------------------------------------------------------------------


def test_builtin_profiles_map_flutter_to_its_image(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ORCHESTRATOR_PROFILES", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_profile(None, tmp_path).image == "claude-worker"
    assert resolve_profile("flutter", tmp_path).image == "claude-flutter"


def test_profiles_file_overrides_and_extends(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "flutter:\n  image: claude-worker\n  memory: 1g\n"
        "tiny:\n  image: claude-worker\n  cpus: 0.5\n  env: {MODE: fast}\n  agent: command\n"
    )
    monkeypatch.setenv("ORCHESTRATOR_PROFILES", str(path))
    settings = resolve_settings(tmp_path)
    assert settings.profiles_path == path  # the environment is read once, into the settings
    profiles = load_profiles(settings.root, settings.profiles_path)
    assert profiles["flutter"].image == "claude-worker" and profiles["flutter"].memory == "1g"
    assert profiles["tiny"].env == {"MODE": "fast"} and profiles["tiny"].agent == "command"
    assert profiles["default"].image == "claude-worker"


def test_unknown_profile_is_one_sentence_naming_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(UnknownProfile) as caught:
        resolve_profile("rust", tmp_path, tmp_path / "empty.yaml")
    message = str(caught.value)
    assert "'rust'" in message and "default, flutter" in message
    assert message.count(".") <= 2 and "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("flutter: [1, 2", "cannot be read"),
        ("- just\n- a list\n", "must map profile names"),
        ("x:\n  image: a\n  colour: red\n", "unknown setting"),
        ("x:\n  user: root\n", "never run as root"),
        ("x:\n  env: {API_KEY: s3cret}\n", "looks like a secret"),
        ("x:\n  mounts: [relative]\n", "HOST:/CONTAINER"),
        ("x:\n  egress_allow: ['pypi.org:443']\n", "is not a host name or *.domain"),
        ("x:\n  egress_allow: ['*']\n", "is not a host name or *.domain"),
    ],
)
def test_bad_profiles_files_are_reported_by_file_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(text)
    with pytest.raises(ProfilesInvalid) as caught:
        load_profiles(tmp_path, path)
    assert expected in str(caught.value) and str(path) in str(caught.value)


# --- plans and task creation -------------------------------------------------------------------


def test_task_ids_are_numbered_after_the_highest(layout: Layout) -> None:
    write_task(layout, Task(id="task-007", prompt="x"))
    assert create_task(layout, {"prompt": "y"}).id == "task-008"
    assert create_task(layout, {"prompt": "z", "retries": 2}).max_attempts == 3


def test_a_plan_is_written_whole_or_not_at_all(layout: Layout, tmp_path: Path) -> None:
    good = tmp_path / "plan.yaml"
    good.write_text(
        "tasks:\n"
        "  - {id: api, prompt: build the api}\n"
        "  - {id: ui, prompt: build the ui, depends_on: [api], retries: 1}\n"
        "  - {prompt: write docs}\n"
    )
    tasks = create_plan(layout, good, {"agent": "command"})
    assert [task.id for task in tasks] == ["api", "ui", "task-001"]
    assert tasks[1].max_attempts == 2 and all(task.agent == "command" for task in tasks)

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            [{"id": "a2", "prompt": "ok"}, {"id": "b2", "depends_on": ["zz"], "prompt": "x"}]
        )
    )
    with pytest.raises(PlanInvalid, match="depends on 'zz'"):
        create_plan(layout, bad)
    assert not layout.task_file("a2").exists()

    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps([{"prompt": "x", "timeout": 5}]))
    with pytest.raises(PlanInvalid, match="timeout: unknown field"):
        create_plan(layout, typo)


# --- progress: when wait may stop --------------------------------------------------------------


def _finish(layout: Layout, task_id: str, status: ResultStatus) -> None:
    handle = claim_task(layout, task_id, worker_id="test")
    assert handle is not None
    handle.publish_result(Result(task_id=task_id, status=status, completed_at=utc_now()))


def _progress(layout: Layout, scope: list[str] | None = None):
    board = read_board(layout)
    return assess(board, board.states(now=utc_now()), scope)


def test_a_task_behind_a_failed_dependency_is_settled_not_waited_for(layout: Layout) -> None:
    write_task(layout, Task(id="a", prompt="x"))
    write_task(layout, Task(id="b", prompt="x", depends_on=["a"]))
    write_task(layout, Task(id="c", prompt="x", depends_on=["b"]))
    assert not _progress(layout).done
    _finish(layout, "a", ResultStatus.FAILED)
    progress = _progress(layout)
    assert progress.done and not progress.succeeded
    assert progress.doomed == {"b", "c"}


def test_a_failure_with_attempts_left_is_not_settled(layout: Layout) -> None:
    write_task(layout, Task(id="a", prompt="x", max_attempts=2))
    _finish(layout, "a", ResultStatus.FAILED)
    assert not _progress(layout).done
    _finish(layout, "a", ResultStatus.SUCCESS)
    assert _progress(layout).succeeded


def test_a_dependency_cycle_does_not_hang_wait(layout: Layout) -> None:
    write_task(layout, Task(id="a", prompt="x", depends_on=["b"]))
    write_task(layout, Task(id="b", prompt="x", depends_on=["a"]))
    write_task(layout, Task(id="ok", prompt="x"))
    assert not _progress(layout).done  # "ok" is still pending
    _finish(layout, "ok", ResultStatus.SUCCESS)
    assert _progress(layout).done and not _progress(layout).succeeded
    assert _progress(layout, ["ok"]).succeeded


# --- recovery ----------------------------------------------------------------------------------


def FakeBackend(exit_code: int | None, logs: str = "", oom: bool = False) -> Backend:
    """A backend whose workers answer only what recovery asks: exit info and log tails."""
    doctor = StubDoctor(StubConfig(root=Path(".")))
    return Backend("fake", FakeWorkers(exit_code, logs, oom), StubServices(), doctor)


class FakeWorkers(Workers):
    """Only what recovery asks: exit info and log tails."""

    def __init__(self, exit_code: int | None, logs: str = "", oom: bool = False) -> None:
        self.info = ExitInfo(exit_code=exit_code, oom_killed=oom)
        self.text = logs

    def spawn(self, request: SpawnRequest) -> WorkerRecord:
        raise NotImplementedError

    def spawn_idle(self, request: IdleSpawnRequest) -> WorkerRecord:
        raise NotImplementedError

    def all(self) -> list[WorkerRecord]:
        return []

    def exit_info(self, name: str) -> ExitInfo:
        return self.info

    def logs(self, name: str, *, tail: int | None = None) -> str:
        return self.text

    def stop(self, name: str, timeout_s: float = 10) -> None:
        pass

    def remove(self, name: str) -> None:
        pass

    def watch_exits(
        self, callback: Callable[[WorkerRecord], None], stop: threading.Event
    ) -> threading.Thread:
        raise NotImplementedError


def _ended(task_id: str, attempt: int, code: int | None) -> WorkerRecord:
    return WorkerRecord(
        name=f"worker-{task_id}", task_id=task_id, attempt=attempt, running=False, exit_code=code
    )


def test_a_killed_worker_gets_a_failed_result_with_exit_code_and_log_tail(layout: Layout) -> None:
    write_task(layout, Task(id="t", prompt="x", max_attempts=2))
    claim_task(layout, "t", worker_id="worker-t")
    backend = FakeBackend(137, logs="cloning\nworking with sk-ant-secret-value\n")
    recovery = recover_ended_worker(
        layout, backend, _ended("t", 1, 137), {"K": "sk-ant-secret-value"}
    )
    assert recovery is not None and recovery.exit_code == 137
    result = read_model(layout.result_file("t"), Result, "t")
    assert result.status == "failed" and result.exit_code == 137 and result.attempt == 1
    assert "SIGKILL" in (result.error or "") and result.worker_id == "manager"
    assert "working with ***" in result.output and "sk-ant" not in result.output
    assert recover_ended_worker(layout, backend, _ended("t", 1, 137), {}) is None  # once only
    board = read_board(layout)
    assert board.states(now=utc_now())["t"] == TaskState.FAILED  # and attempt 2 may start


def test_oom_is_named_in_the_error(layout: Layout) -> None:
    write_task(layout, Task(id="t", prompt="x"))
    claim_task(layout, "t", worker_id="worker-t")
    recover_ended_worker(layout, FakeBackend(137, oom=True), _ended("t", 1, 137), {})
    assert "ran out of memory" in (read_model(layout.result_file("t"), Result, "t").error or "")


def test_a_worker_that_died_before_claiming_still_uses_up_its_attempt(layout: Layout) -> None:
    write_task(layout, Task(id="t", prompt="x", max_attempts=2))
    for attempt in (1, 2):
        recovery = recover_ended_worker(layout, FakeBackend(1), _ended("t", attempt, 1), {})
        assert recovery is not None and recovery.attempt == attempt
    assert recover_ended_worker(layout, FakeBackend(1), _ended("t", 3, 1), {}) is None
    states = read_board(layout).states(now=utc_now())
    assert states["t"] == TaskState.FAILED  # a poison task stops at exactly max_attempts


def test_nothing_to_claim_and_finished_attempts_are_left_alone(layout: Layout) -> None:
    write_task(layout, Task(id="t", prompt="x"))
    assert recover_ended_worker(layout, FakeBackend(3), _ended("t", 1, 3), {}) is None
    _finish(layout, "t", ResultStatus.SUCCESS)
    assert recover_ended_worker(layout, FakeBackend(137), _ended("t", 1, 137), {}) is None
    assert read_model(layout.result_file("t"), Result, "t").status == "success"


def test_a_stale_heartbeat_without_a_worker_becomes_a_failed_result(layout: Layout) -> None:
    write_task(layout, Task(id="t", prompt="x"))
    long_ago = utc_now() - timedelta(minutes=5)
    claim_task(layout, "t", worker_id="host:1", lease_s=1, now=long_ago)
    board = read_board(layout)
    assert board.states(now=utc_now())["t"] == TaskState.LOST
    recovery = recover_lost_task(layout, FakeBackend(None), board.snapshots["t"], {})
    assert recovery is not None and "stopped heartbeating" in recovery.error
    assert read_board(layout).states(now=utc_now())["t"] == TaskState.FAILED


# --- Docker details that need no engine --------------------------------------------------------


def test_secrets_archive_holds_owner_only_files_of_the_worker_user() -> None:
    data = secrets_archive({"ANTHROPIC_API_KEY": "sk-1", "GIT_TOKEN": "tok"}, "1000:1000")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = {member.name: member for member in archive.getmembers()}
        assert members["orchestrator-secrets"].isdir()
        key = members["orchestrator-secrets/ANTHROPIC_API_KEY"]
        assert (key.mode, key.uid, key.gid) == (0o400, 1000, 1000)
        assert archive.extractfile(key).read() == b"sk-1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("error", "host", "expected"),
    [
        (
            "('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))",
            "unix:///tmp/dead.sock",
            "No Docker engine listens at DOCKER_HOST=unix:///tmp/dead.sock",
        ),
        (
            "('Connection aborted.', PermissionError(13, 'Permission denied'))",
            None,
            "Permission denied on the Docker socket",
        ),
        ("[Errno 111] Connection refused", "tcp://127.0.0.1:1", "refuses connections"),
    ],
)
def test_engine_failures_are_one_sentence_with_the_fix(
    monkeypatch, error: str, host: str | None, expected: str
) -> None:
    if host:
        monkeypatch.setenv("DOCKER_HOST", host)
    else:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    message = describe_docker_failure(RuntimeError(error), host)
    assert expected in message and "\n" not in message and message.endswith(".")


class _Containers:
    def __init__(self, mounts: list[dict[str, str]] | None) -> None:
        self.mounts = mounts

    def get(self, _name: str):
        from docker.errors import NotFound

        if self.mounts is None:
            raise NotFound("not a container")
        return type("C", (), {"attrs": {"Mounts": self.mounts}})()


def _client(mounts: list[dict[str, str]] | None):
    return type("Client", (), {"containers": _Containers(mounts)})()


def test_the_workers_volume_is_found_from_the_managers_own_mounts(tmp_path: Path) -> None:
    named = [{"Type": "volume", "Name": "orchestration-volume", "Destination": "/orchestration"}]
    assert find_volume(_client(named), Path("/orchestration")) == "orchestration-volume"
    bind = [{"Type": "bind", "Source": "/srv/data", "Destination": "/data"}]
    assert find_volume(_client(bind), Path("/data/root")) == "/srv/data/root"
    assert find_volume(_client(None), tmp_path) == str(tmp_path.resolve())
    with pytest.raises(VolumeNotWritable, match="not on a volume"):
        find_volume(_client([]), Path("/orchestration"))


def test_redact_hides_secret_values() -> None:
    assert redact("token=abcdef123 ok", {"T": "abcdef123"}) == "token=*** ok"


def test_settings_take_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCHESTRATION_DIR", str(tmp_path))
    monkeypatch.setenv("ORCHESTRATOR_VOLUME", "my-volume")
    monkeypatch.setenv("REPO_URL", "https://example.invalid/r.git")
    settings = resolve_settings()
    assert settings.root == tmp_path and settings.volume == "my-volume"
    assert settings.repo_url == "https://example.invalid/r.git"


def test_settings_read_the_environment_they_are_given_once(tmp_path: Path) -> None:
    env = {
        "ORCHESTRATOR_BACKEND": "local",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/model",
        "ANTHROPIC_MODEL": "claude-test",
        "GIT_USER_NAME": "Ada",
        "AWS_REGION": "eu-west-1",
        "ORCHESTRATOR_PROFILES": str(tmp_path / "profiles.yaml"),
    }
    settings = resolve_settings(tmp_path, env=env)
    assert settings.backend == "local" and settings.upstream == "http://127.0.0.1:9/model"
    assert settings.worker_env == {
        "ANTHROPIC_MODEL": "claude-test", "AWS_REGION": "eu-west-1", "GIT_USER_NAME": "Ada"
    }  # fmt: skip
    assert settings.gateway_env == {"AWS_REGION": "eu-west-1"}
    assert settings.model_switches == ["ANTHROPIC_BASE_URL"]
    assert settings.profiles_path == tmp_path / "profiles.yaml"
    assert resolve_settings(tmp_path, env={}).worker_env == {}
