"""``--backend slurm`` on a real one-node SLURM cluster (the ``slurm_cluster`` fixture): every
attempt is an ``sbatch`` job whose script starts the hardened worker container with the node's
Docker; the gateway and the scripted model run on this host's Docker engine. An honest task
succeeds, a hostile one finds no credential, no network and no protocol file, a job cancelled
under a worker is failed by recovery and retried, a task's timeout ends it, and ``status``,
``logs --worker``, ``doctor`` and ``cleanup`` answer as with Docker. The first tests need
neither SLURM nor Docker: how the Docker engine's options become a ``docker run`` line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from manager.backends.base import ExitInfo, WorkerRecord
from manager.backends.config import SlurmConfig
from manager.backends.docker.workers import WorkerContainer, hardened_options
from manager.backends.slurm.cluster import Job
from manager.backends.slurm.script import batch_script, run_argv
from manager.backends.slurm.workers import ended_job_info, memory_mib, time_limit_min
from manager.config import resolve_settings
from manager.errors import BadInput, SpawnFailed
from manager.profiles import Profile
from orchestration_protocol import Layout
from orchestration_protocol.mirrors import mirror_dir
from tests.clusters.slurm_cluster import SlurmCluster
from tests.gitrepo import make_remote, show
from tests.test_isolation_docker import PROBES

VENV_BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"
WORKER_IMAGE = os.environ.get("ORCHESTRATOR_WORKER_IMAGE") or "claude-worker"
DECOY = "sk-ant-decoy-0123456789abcdef"
"""A credential in the manager's environment that no worker may see."""
ESCAPES = f"""
probe() {{ name=$1; shift; if sh -c "$*" >/dev/null 2>&1; then echo "$name ALLOWED"; else echo "$name refused"; fi; }}
probe tcp-out "python3 -c 'import socket; socket.create_connection((\\"1.1.1.1\\", 53), 3)'"
probe dns "getent hosts example.com"
probe default-route "awk 'NR>1 && \\$2==\\"00000000\\"' /proc/net/route | grep -q ."
probe env-credential "env | grep -q {DECOY}"
probe proc-credential "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\\\0' '\\\\n' | grep -q {DECOY}"
probe file-credential "grep -rqs {DECOY} /etc /home /tmp /root /run /var"
"""


# --- the command line, without SLURM ---------------------------------------------------------


def _options(profile: Profile) -> dict[str, object]:
    worker = WorkerContainer("worker-abc-t1", profile, {"A": "b c"}, ("/cache:/cache:ro",),
                             {"orchestrator.task": "t1"}, ("--task", "t1"))  # fmt: skip
    return hardened_options(worker, volume="/srv/orch", root_label="bind:/srv/orch")


def test_the_docker_engines_options_become_a_docker_run_line() -> None:
    profile = Profile(name="default", image="claude-worker", memory="512m", cpus=1.5, pids_limit=99)
    argv = run_argv("docker", _options(profile))
    line = " ".join(argv)
    for flag in ("--network none", "--cap-drop ALL", "--security-opt no-new-privileges",
                 "--user 0:0", "--memory 512m", "--cpus 1.5", "--pids-limit 99",
                 "--volume /srv/orch:/runtime/orchestration:rw", "--volume /cache:/cache:ro",
                 "--label orchestrator.root=bind:/srv/orch", "--label orchestrator.role=worker",
                 "--label orchestrator.profile=default", "--label orchestrator.task=t1",
                 "--env ORCHESTRATION_DIR=/runtime/orchestration", "--name worker-abc-t1",
                 "--init", "--read-only", "--tmpfs /tmp:size=268435456,mode=1777,exec",
                 "--log-driver json-file --log-opt max-size=10m --log-opt max-file=3"):  # fmt: skip
        assert flag in line, flag
    assert argv[-3:] == ["claude-worker", "--task", "t1"]
    assert line.count("--cap-add") == 6


def test_an_option_the_script_cannot_render_is_refused_not_dropped() -> None:
    options = {**_options(Profile(name="default")), "privileged": False}
    with pytest.raises(SpawnFailed, match="privileged"):
        run_argv("docker", options)


def test_the_batch_script_kills_its_container_on_term_and_records_its_exit() -> None:
    script = batch_script("podman", _options(Profile(name="default")), "/srv/orch/slurm/j.exit", None)
    assert "trap on_term TERM INT" in script and 'podman kill "$name"' in script
    assert "podman run --sig-proxy=false --ulimit" in script
    assert "'A=b c'" in script and "record=/srv/orch/slurm/j.exit" in script


def test_limits_are_whole_minutes_and_mebibytes() -> None:
    assert time_limit_min(None, 5) is None
    assert time_limit_min(1, 5) == 6 and time_limit_min(61, 0) == 2
    assert memory_mib("512m") == 512 and memory_mib("1g") == 1024 and memory_mib("1500k") == 2


@pytest.mark.parametrize(
    ("state", "code", "record", "info"),
    [
        ("COMPLETED", 0, {"exit_code": 0, "oom_killed": False}, ExitInfo(0)),
        ("FAILED", 137, {"exit_code": 137, "oom_killed": True}, ExitInfo(137, oom_killed=True)),
        ("FAILED", 3, {}, ExitInfo(3)),
        ("OUT_OF_MEMORY", None, {}, ExitInfo(137, oom_killed=True)),
        ("CANCELLED", 0, {"exit_code": 137, "oom_killed": False},
         ExitInfo(None, error="SLURM cancelled job 7 (scancel); its container exited 137")),
        ("TIMEOUT", 0, {}, ExitInfo(None, error="SLURM ended job 7 at its time limit (TIMEOUT)")),
        ("PREEMPTED", 0, {}, ExitInfo(None, error="SLURM preempted job 7 (PREEMPTED)")),
        ("NODE_FAIL", 0, {}, ExitInfo(None, error="the node of SLURM job 7 failed (NODE_FAIL)")),
        ("RUNNING", None, {}, ExitInfo(None)),
    ],
)  # fmt: skip
def test_each_final_state_is_an_exit_info(
    state: str, code: int | None, record: dict[str, object], info: ExitInfo
) -> None:
    assert ended_job_info(Job(7, "worker-abc-t.attempt-1", state, code), record) == info


def test_the_slurm_backend_and_its_runtime_come_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_SLURM_RUNTIME", "podman")
    config = resolve_settings(tmp_path, backend="slurm").engine_config()
    assert isinstance(config, SlurmConfig) and config.runtime == "podman"
    monkeypatch.setenv("ORCHESTRATOR_SLURM_RUNTIME", "lxc")
    with pytest.raises(BadInput, match="ORCHESTRATOR_SLURM_RUNTIME"):
        resolve_settings(tmp_path, backend="slurm")


# --- on the cluster --------------------------------------------------------------------------


def on_cluster(test: Callable[..., None]) -> Callable[..., None]:
    """Marks a test that needs the SLURM cluster, Docker and the worker image."""
    for mark in (pytest.mark.slurm, pytest.mark.docker, pytest.mark.slow):
        test = mark(test)
    return test


@pytest.fixture
def root(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of ``orchestrator --backend slurm`` for a fresh root; afterwards its
    workers, gateway and scripted model are gone."""
    probe = subprocess.run(["docker", "image", "inspect", WORKER_IMAGE], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no image {WORKER_IMAGE}: run scripts/build-images.sh --offline")
    layout = Layout(tmp_path / "orchestration").ensure()
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(f"default:\n  image: {WORKER_IMAGE}\n  memory: 512m\n  cpus: 1\n")
    cleared = {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_BASE_URL",
               "ORCHESTRATOR_VOLUME", "ORCHESTRATOR_SIMULATE", "ORCHESTRATOR_NETWORK", "DOCKER_HOST"}  # fmt: skip
    env = {
        **{key: value for key, value in os.environ.items() if key not in cleared},
        "ORCHESTRATION_DIR": str(layout.root),
        "ORCHESTRATOR_PROFILES": str(profiles),
        "ORCHESTRATOR_BACKEND": "slurm",
        "ORCHESTRATOR_HEARTBEAT_S": "1",
        "REPO_URL": str(make_remote(tmp_path)),
    }
    yield env
    orchestrator(env, "cleanup", "--all", "--gateway", "--simulation")
    label = f"label=orchestrator.root=bind:{layout.root.resolve()}"
    left = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True)
    for container in left.stdout.split():
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)


def orchestrator(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "orchestrator"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def layout_of(env: dict[str, str]) -> Layout:
    return Layout(Path(env["ORCHESTRATION_DIR"]))


def result_of(env: dict[str, str], task_id: str) -> dict[str, object]:
    return dict(json.loads(layout_of(env).result_file(task_id).read_text()))


def completion(job_name: str) -> list[tuple[str, str]]:
    """(state, exit code) of every ended job named ``job_name`` (sacct's completion log)."""
    out = subprocess.run(
        ["sacct", "-c", "-n", "-P", "-S", "2000-01-01", "-o", "JobName,State,ExitCode"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [tuple(line.split("|")[1:3]) for line in out.splitlines() if line.startswith(f"{job_name}|")]  # type: ignore[misc]


def workers(env: dict[str, str]) -> list[WorkerRecord]:
    from manager.backends import make_backend

    settings = resolve_settings(layout_of(env).root, backend="slurm")
    backend = make_backend(settings.engine_config())
    try:
        return backend.workers.all()
    finally:
        backend.close()


@on_cluster
def test_an_honest_task_runs_as_a_slurm_job_and_status_logs_and_doctor_answer(root: dict[str, str]) -> None:
    done = orchestrator(root, "run", "--simulate", "-n", "1", "--agent", "command", "--json",
                        "echo hello > hello.txt")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert result_of(root, "task-001")["status"] == "success"
    layout = layout_of(root)
    assert show(mirror_dir(layout, root["REPO_URL"]), "orchestrator/task-001", "hello.txt") == "hello\n"
    [worker] = workers(root)
    assert worker.task_id == "task-001" and not worker.running and worker.exit_code == 0
    job = f"{worker.name}.attempt-1"
    assert completion(job) == [("COMPLETED", "0:0")]
    assert json.loads((layout.root / "slurm" / f"{job}.exit").read_text()) == {"exit_code": 0, "oom_killed": False}
    modes = {path.suffix: path.stat().st_mode & 0o777 for path in (layout.root / "slurm").glob(f"{job}.*")}
    assert modes == {".sh": 0o644, ".out": 0o644, ".exit": 0o644}, "only the manager's user may write them"
    assert (layout.root / "slurm").stat().st_mode & 0o777 == 0o755
    container = subprocess.run(["docker", "ps", "-aq", "--filter", f"name=^{worker.name}$"],
                               capture_output=True, text=True)  # fmt: skip
    assert container.stdout.strip() == "", "the job's script removes its container"

    status = json.loads(orchestrator(root, "status", "--json").stdout)
    assert [task["state"] for task in status["tasks"]] == ["success"], status
    logs = orchestrator(root, "logs", "task-001", "--worker")
    assert "result: success" in logs.stdout, logs.stdout + logs.stderr
    doctor = orchestrator(root, "doctor", "--simulate")
    lines = doctor.stdout.splitlines()
    assert any(line.startswith("ok   slurm: SLURM answers") for line in lines), doctor.stdout
    assert any(line.startswith("ok   node: node ") and "has docker" in line for line in lines), doctor.stdout
    cleanup = orchestrator(root, "cleanup")
    assert cleanup.returncode == 0 and workers(root) == [], cleanup.stdout + cleanup.stderr
    assert not list((layout.root / "slurm").glob(f"{job}.*"))


@on_cluster
@pytest.mark.parametrize("runtime", ["docker", pytest.param("podman", marks=pytest.mark.podman)])
def test_a_hostile_task_finds_no_credential_no_network_and_no_protocol_file(
    root: dict[str, str], runtime: str
) -> None:
    if runtime == "podman":
        _require_podman_image()
    env = {**root, "ANTHROPIC_API_KEY": DECOY, "ORCHESTRATOR_SLURM_RUNTIME": runtime}
    prompt = f"{{ {PROBES} {ESCAPES} }} > probes.txt"
    for task_id, text in (("hostile", prompt), ("honest", "sleep 1; echo fine > fine.txt")):
        made = orchestrator(env, "task", "create", "--id", task_id, "--agent", "command", text)
        assert made.returncode == 0, made.stderr
    done = orchestrator(env, "dispatch", "--simulate", "--until-done")
    assert done.returncode == 0, done.stdout + done.stderr
    assert result_of(env, "honest")["status"] == "success"
    assert result_of(env, "hostile")["status"] == "success"
    probes = show(mirror_dir(layout_of(env), env["REPO_URL"]), "orchestrator/hostile", "probes.txt")
    assert "ALLOWED" not in probes, probes
    assert probes.count("refused") == 18, probes
    for script in (layout_of(env).root / "slurm").glob("*.sh"):
        assert DECOY not in script.read_text(), "a job's script carries the manager's credential"


def _require_podman_image() -> None:
    """Podman (as root) with the worker image loaded from Docker; skipped (failed in CI) without."""
    from tests.conftest import require

    found = subprocess.run(["podman", "image", "exists", f"localhost/{WORKER_IMAGE}"],
                           capture_output=True, check=False) if shutil.which("podman") else None  # fmt: skip
    require(found is not None and found.returncode == 0,
            f"no podman image localhost/{WORKER_IMAGE}: docker save {WORKER_IMAGE} | podman load")  # fmt: skip


@on_cluster
def test_a_job_cancelled_under_its_worker_is_failed_by_recovery_and_retried(
    root: dict[str, str], slurm_cluster: SlurmCluster
) -> None:
    made = orchestrator(root, "task", "create", "--id", "c1", "--agent", "command", "--retries", "1",
                        "sleep 8; echo ok > ok.txt")  # fmt: skip
    assert made.returncode == 0, made.stderr
    dispatch = subprocess.Popen([str(VENV_BIN / "orchestrator"), "dispatch", "--simulate", "--until-done"],
                                env=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        job = _running_job(slurm_cluster, layout_of(root), "c1")
        subprocess.run(["scancel", job], check=True)
        output, _ = dispatch.communicate(timeout=300)
    finally:
        dispatch.kill()
    assert dispatch.returncode == 0, output
    result = result_of(root, "c1")
    assert result["status"] == "success" and result["attempt"] == 2, result
    first = json.loads((layout_of(root).results_dir / "c1" / "attempts" / "1.json").read_text())
    assert first["status"] == "failed" and f"SLURM cancelled job {job}" in first["error"], first
    assert slurm_cluster.completion_state(job) == "CANCELLED"


def _running_job(slurm_cluster: SlurmCluster, layout: Layout, task_id: str) -> str:
    """The id of the task's job once its worker has heartbeated."""
    for _ in range(240):
        queue = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout
        ids = [line.split()[0] for line in queue.splitlines() if f"-{task_id}.attempt-1" in line]
        if ids and layout.status_file(task_id).exists():
            return ids[0]
        time.sleep(0.5)
    raise AssertionError(f"no running job for {task_id}")


@on_cluster
def test_a_task_over_its_timeout_ends_timeout_within_a_job_limit_above_it(root: dict[str, str]) -> None:
    made = orchestrator(root, "task", "create", "--id", "slow", "--agent", "command", "--timeout", "3",
                        "sleep 120")  # fmt: skip
    assert made.returncode == 0, made.stderr
    done = orchestrator(root, "dispatch", "--simulate", "--until-done")
    assert result_of(root, "slow")["status"] == "timeout", done.stdout + done.stderr
    [worker] = workers(root)
    limit = subprocess.run(
        ["sacct", "-c", "-n", "-P", "-S", "2000-01-01", "-o", "JobName,Timelimit"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"{worker.name}.attempt-1|6\n" in limit or f"{worker.name}.attempt-1|00:06:00\n" in limit, limit


@on_cluster
def test_a_job_whose_node_fails_is_failed_by_recovery_and_retried_when_the_node_returns(
    root: dict[str, str], slurm_cluster: SlurmCluster
) -> None:
    made = orchestrator(root, "task", "create", "--id", "n1", "--agent", "command", "--retries", "1",
                        "sleep 8; echo ok > ok.txt")  # fmt: skip
    assert made.returncode == 0, made.stderr
    dispatch = subprocess.Popen([str(VENV_BIN / "orchestrator"), "dispatch", "--simulate", "--until-done"],
                                env=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        job = _running_job(slurm_cluster, layout_of(root), "n1")
        subprocess.run(["scontrol", "update", f"nodename={slurm_cluster.node}", "state=down",
                        "reason=test"], check=True)  # fmt: skip
        output, _ = dispatch.communicate(timeout=300)
    finally:
        dispatch.kill()
    assert dispatch.returncode == 0, output
    result = result_of(root, "n1")
    assert result["status"] == "success" and result["attempt"] == 2, (result, output)
    first = json.loads((layout_of(root).results_dir / "n1" / "attempts" / "1.json").read_text())
    assert f"the node of SLURM job {job} failed (NODE_FAIL)" in first["error"], first
