"""The ``slurm_cluster`` fixture: a one-node SLURM cluster from Debian's packages, started and
stopped by ``scripts/engines/slurm.sh``."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "engines" / "slurm.sh"
FINAL_STATES = ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY",
                "PREEMPTED", "BOOT_FAIL", "DEADLINE")  # fmt: skip


@dataclass(frozen=True)
class SlurmCluster:
    """The running one-node cluster and helpers to drive it."""

    node: str
    """The one node's name (this machine's short hostname)."""
    partition: str
    """The default partition's name."""

    def sbatch(self, *args: str) -> str:
        """Submit a job (``sbatch --parsable ARGS``); returns its job id."""
        done = _run("sbatch", "--parsable", *args)
        return done.split(";")[0].strip()

    def completion_state(self, job: str) -> str:
        """The job's final state from the job completion log (``sacct --completion``), or ""
        while it has none."""
        out = _run("sacct", "--completion", "-n", "-P", "-j", job, "-o", "JobID,State")
        for line in out.splitlines():
            job_id, _, state = line.partition("|")
            if job_id == job:
                return state.strip()
        return ""

    def queue_state(self, job: str) -> str:
        """The job's state in ``squeue`` (PENDING, RUNNING, ...), or "" once it left the queue."""
        return _run("squeue", "-h", "-j", job, "-o", "%T", check=False).strip()

    def wait_final(self, job: str, polls: int = 600) -> str:
        """Poll until the job has a final state; returns it ("" when it never got one)."""
        for _ in range(polls):
            state = self.completion_state(job)
            if state.startswith(FINAL_STATES):
                return state
            time.sleep(0.5)
        return ""


def _run(*args: str, check: bool = True) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Bring the cluster up (or reuse it when ``.ci/run`` already did) and stop at the end what
    this fixture started."""
    require(os.geteuid() == 0, "the SLURM cluster needs root (packages, munged, slurmd)")
    require(shutil.which("apt-get") is not None or shutil.which("slurmctld") is not None,
            "no slurmctld and no apt-get to install Debian's slurm-wlm")  # fmt: skip
    was_up = _script("status").returncode == 0
    started = _script("up")
    if started.returncode != 0:
        _script("down")
        pytest.fail(f"slurm.sh up failed: {started.stderr.strip()}")
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    try:
        yield SlurmCluster(node=node, partition="debug")
    finally:
        if not was_up:
            _script("down")
