"""A one-node SLURM cluster runs, times out and cancels batch jobs that start Docker containers,
and its job completion log records the final states the SLURM backend will read."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.clusters.slurm_cluster import SlurmCluster
from tests.conftest import require

pytestmark = [pytest.mark.slurm, pytest.mark.docker, pytest.mark.slow]

IMAGE = "claude-orchestrator-base:bookworm"


@pytest.fixture(scope="module")
def image() -> str:
    probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False)
    require(probe.returncode == 0, f"no image {IMAGE}: run scripts/build-images.sh --offline")
    return IMAGE


def _container_exists(name: str) -> bool:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^{name}$"], capture_output=True, text=True
    )
    return bool(out.stdout.strip())


def test_batch_job_runs_a_container_and_completes(
    slurm_cluster: SlurmCluster, image: str, tmp_path: Path
) -> None:
    out = tmp_path / "job.out"
    job = slurm_cluster.sbatch(
        "--job-name", "orch-probe", "--output", str(out), "--wrap",
        f"docker run --rm --network none {image} sh -c 'echo from-container'",
    )  # fmt: skip
    assert slurm_cluster.wait_final(job) == "COMPLETED"
    assert out.read_text().strip() == "from-container"


def test_batch_job_over_its_time_limit_ends_timeout(slurm_cluster: SlurmCluster) -> None:
    # SLURM limits are whole minutes: --time=0:01 (one second) is rounded up to one minute.
    job = slurm_cluster.sbatch("--time=0:01", "--output", "/dev/null", "--wrap", "sleep 600")
    assert slurm_cluster.wait_final(job) == "TIMEOUT"


def test_cancelled_job_ends_cancelled_and_its_container_is_removed(
    slurm_cluster: SlurmCluster, image: str, tmp_path: Path
) -> None:
    name = f"orch-slurm-cancel-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "job.sh"
    # scancel signals the job's processes, not the container (dockerd's child): the batch
    # script must remove its container itself on SIGTERM.
    script.write_text(
        "#!/bin/bash\n"
        f"trap 'docker rm -f {name} >/dev/null; exit 143' TERM\n"
        f"docker run --rm --name {name} --network none {image} sleep 600 &\n"
        "wait $!\n"
    )
    job = slurm_cluster.sbatch("--output", "/dev/null", str(script))
    try:
        for _ in range(240):
            if slurm_cluster.queue_state(job) == "RUNNING" and _container_exists(name):
                break
            time.sleep(0.5)
        assert slurm_cluster.queue_state(job) == "RUNNING"
        subprocess.run(["scancel", job], check=True)
        assert slurm_cluster.wait_final(job) == "CANCELLED"
        for _ in range(60):
            if not _container_exists(name):
                break
            time.sleep(0.5)
        assert not _container_exists(name)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def _wait_running(slurm_cluster: SlurmCluster, job: str) -> None:
    for _ in range(240):
        if slurm_cluster.queue_state(job) == "RUNNING":
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job} never ran: {slurm_cluster.queue_state(job)}")


def test_node_failure_ends_a_no_requeue_job_node_fail(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.sbatch("--no-requeue", "--output", "/dev/null", "--wrap", "sleep 600")
    _wait_running(slurm_cluster, job)
    subprocess.run(
        ["scontrol", "update", f"nodename={slurm_cluster.node}", "state=down", "reason=test"],
        check=True,
    )
    try:
        assert slurm_cluster.wait_final(job) == "NODE_FAIL"
    finally:
        # ReturnToService=2: the node comes back once slurmd re-registers.
        for _ in range(240):
            idle = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
            if idle.stdout.strip() == "idle":
                break
            time.sleep(0.5)


def test_container_over_its_memory_limit_fails_the_job_with_137(
    slurm_cluster: SlurmCluster, image: str
) -> None:
    # SLURM does not see the container's memory (it is dockerd's child): Docker's limit kills
    # it, and the job fails with the exit code its script passes on.
    job = slurm_cluster.sbatch(
        "--output", "/dev/null", "--wrap",
        f"docker run --rm --network none --memory 32m --memory-swap 32m {image} "
        "python3 -c 'x = bytearray(200 << 20)'",
    )  # fmt: skip
    assert slurm_cluster.wait_final(job) == "FAILED"
    out = subprocess.run(
        ["sacct", "--completion", "-n", "-P", "-j", job, "-o", "ExitCode"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.split() == ["137:0"]
