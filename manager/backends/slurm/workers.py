"""The SLURM engine's workers: one batch job per attempt, whose script starts the hardened
worker container on its node (:mod:`.script`), found again by its name in ``squeue`` and in
``sacct --completion``.

A job is named ``worker-<root>-<task-id>.attempt-<n>`` (the completion log keeps names, not
comments), carries ``--comment "orchestrator.root=... orchestrator.task=... orchestrator.attempt=..."``,
asks for the profile's CPUs (rounded up) and memory, a ``--time`` of the task's timeout rounded
up to minutes plus a margin, and ``--no-requeue`` (retries are the protocol's, and a requeued
job would run an attempt twice). Its files live in ``<root>/slurm/``: ``<job>.sh`` (the script;
a job without one is forgotten), ``<job>.out`` (the container's output) and ``<job>.exit``
(how the container ended). In the views the newest attempt's job is ``worker-<root>-<task-id>``
and an earlier one ``worker-<root>-<task-id>.attempt-<n>``, as with Docker.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from ...errors import BadInput, SpawnFailed, TaskNotSpawnable
from ...polling import poll_until
from ..base import (
    LABEL_ATTEMPT,
    LABEL_ROOT,
    LABEL_TASK,
    ExitInfo,
    IdleSpawnRequest,
    SpawnRequest,
    WorkerRecord,
    Workers,
    archived_worker_name,
    worker_name,
)
from ..config import SlurmConfig
from ..docker.connection import DockerConnection
from ..docker.workers import FINISHING_S, WorkerContainer, hardened_options
from ..exits import poll_exits
from . import cluster
from .cluster import Job
from .script import batch_script

JOBS_DIR = "slurm"
"""The root's directory of job scripts, outputs and exit records."""
STOP_WAIT_S = 15.0
"""How long ``stop`` waits for a cancelled job to leave the queue, beyond its grace."""
STATE_ERRORS = {
    "CANCELLED": "SLURM cancelled job {job} (scancel)",
    "TIMEOUT": "SLURM ended job {job} at its time limit (TIMEOUT)",
    "NODE_FAIL": "the node of SLURM job {job} failed (NODE_FAIL)",
    "PREEMPTED": "SLURM preempted job {job} (PREEMPTED)",
    "BOOT_FAIL": "the node of SLURM job {job} failed to boot (BOOT_FAIL)",
    "DEADLINE": "SLURM ended job {job} at its deadline (DEADLINE)",
}
"""Final states in which SLURM, not the worker, ended the job."""


def node_root(docker: DockerConnection) -> str:
    """The root's path on the nodes: the host path the Docker engine's workers mount (the nodes
    share it at the same path); SpawnFailed for a named volume."""
    volume = docker.volume
    if not volume.startswith("/"):
        raise SpawnFailed(
            f"The slurm backend needs the orchestration root on a host path the nodes share, "
            f"not the Docker volume {volume}; give --volume /shared/path (and --root there)."
        )
    return volume


def exit_code_of(job: Job, ended: dict[str, object]) -> int | None:
    """The ended job's container's exit code: the script's record, else the job's own; None
    when SLURM ended the job (its state says how)."""
    if job.state.split()[0] in STATE_ERRORS:
        return None
    code = ended.get("exit_code")
    return code if isinstance(code, int) else job.exit_code


def ended_job_info(job: Job, ended: dict[str, object]) -> ExitInfo:
    """How ``job`` ended, from its state and its script's exit record ``ended`` (maybe {})."""
    if job.running:
        return ExitInfo(exit_code=None)
    state = job.state.split()[0]
    oom = ended.get("oom_killed") is True or state == "OUT_OF_MEMORY"
    if state in STATE_ERRORS:
        code = ended.get("exit_code")
        after = f"; its container exited {code}" if isinstance(code, int) else ""
        error = STATE_ERRORS[state].format(job=job.job_id) + after
        return ExitInfo(exit_code=None, oom_killed=oom, error=error)
    code = exit_code_of(job, ended)
    return ExitInfo(exit_code=137 if oom and code is None else code, oom_killed=oom)


def memory_mib(memory: str) -> int:
    """Docker's memory syntax (``512m``, ``4g``) in whole MiB, rounded up (``sbatch --mem``)."""
    from docker.utils import parse_bytes

    return max(1, math.ceil(int(parse_bytes(memory)) / (1 << 20)))


def time_limit_min(timeout_s: float | None, margin_min: int) -> int | None:
    """``--time`` in minutes: the timeout rounded up to minutes plus the margin; None for none."""
    return None if timeout_s is None else math.ceil(timeout_s / 60) + margin_min


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` as 0644 whatever the umask (the CLI's is permissive for the workers' uid):
    only the manager's user may change a job's script or output."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o644)
        file.write(text)


class SlurmWorkers(Workers):
    """Workers as SLURM batch jobs of this root (found by the root's short id in their names)."""

    keeps_warm_pools = False  # a pool worker would hold a SLURM allocation while idle

    def __init__(self, config: SlurmConfig, docker: DockerConnection) -> None:
        self.config = config
        self.docker = docker
        self.jobs_dir = config.root / JOBS_DIR

    @property
    def prefix(self) -> str:
        return worker_name("", self.docker.scope)

    def _parse(self, job_name: str) -> tuple[str, int] | None:
        """(task id, attempt) of one of this root's job names; None for another's."""
        match = re.fullmatch(re.escape(self.prefix) + r"(.+)\.attempt-(\d+)", job_name)
        return (match.group(1), int(match.group(2))) if match else None

    def _file(self, job_name: str, suffix: str) -> Path:
        return self.jobs_dir / f"{job_name}{suffix}"

    # --- finding jobs ------------------------------------------------------------------------

    def _jobs(self) -> dict[str, Job]:
        """The newest job of each of this root's job names that still has its script."""
        found: dict[str, Job] = {}
        ended = cluster.completed_jobs(self.prefix)
        for job in (*ended, *cluster.queued_jobs(self.prefix)):  # the queue's word wins
            known = found.get(job.name)
            if known is None or job.job_id >= known.job_id:
                found[job.name] = job
        return {
            name: job
            for name, job in found.items()
            if self._parse(name) and self._file(name, ".sh").exists()
        }

    def _named_jobs(self) -> list[tuple[str, Job]]:
        """(view name, job): the newest attempt of a task is ``worker-<root>-<task-id>``."""
        jobs = self._jobs()
        newest: dict[str, int] = {}
        for name in jobs:
            task_id, attempt = self._parse(name) or ("", 0)
            newest[task_id] = max(newest.get(task_id, -1), attempt)
        named = []
        for name, job in jobs.items():
            task_id, attempt = self._parse(name) or ("", 0)
            view = worker_name(task_id, self.docker.scope)
            named.append((view if attempt == newest[task_id] else name, job))
        return named

    def _job(self, name: str) -> Job | None:
        return next((job for view, job in self._named_jobs() if view == name), None)

    def _exit_record(self, job: Job) -> dict[str, object]:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self._file(job.name, ".exit").read_text())
            if isinstance(data, dict):
                return data
        return {}

    def _record(self, view: str, job: Job) -> WorkerRecord:
        task_id, attempt = self._parse(job.name) or ("", 0)
        ended = self._exit_record(job)
        return WorkerRecord(
            name=view,
            task_id=task_id,
            attempt=attempt,
            running=job.running,
            exit_code=None if job.running else exit_code_of(job, ended),
            created_at=job.submitted,
            started=job.state != "PENDING" and (job.running or bool(ended) or job.state != "CANCELLED"),
        )

    def all(self) -> list[WorkerRecord]:
        return [self._record(view, job) for view, job in self._named_jobs()]

    def exit_info(self, name: str) -> ExitInfo:
        job = self._job(name)
        if job is None:
            return ExitInfo(
                exit_code=None,
                error="its SLURM job is gone (neither in squeue nor in sacct's completion log)",
            )
        return ended_job_info(job, self._exit_record(job))

    def logs(self, name: str, *, tail: int | None = None) -> str:
        job = self._job(name)
        if job is None:
            return ""
        try:
            text = self._file(job.name, ".out").read_text(errors="replace")
        except OSError:
            return ""
        return "".join(text.splitlines(keepends=True)[-tail:]) if tail else text

    # --- starting ----------------------------------------------------------------------------

    def spawn_idle(self, request: IdleSpawnRequest) -> WorkerRecord:
        raise BadInput(
            "The slurm backend starts every worker as a batch job; run the warm pool with "
            "--backend docker."
        )

    def _make_room(self, request: SpawnRequest) -> None:
        """Wait briefly for the task's previous job to end; refuse while it runs."""

        def ended() -> bool:
            job = self._job(request.name)
            return job is None or not job.running

        if not poll_until(ended, timeout_s=FINISHING_S, interval_s=0.5):
            raise TaskNotSpawnable(
                f"The SLURM job of task {request.task_id}'s previous attempt is still running; "
                f"wait for it, or stop it (orchestrator task cancel {request.task_id})."
            )

    def _options(self, request: SpawnRequest, root: str) -> dict[str, object]:
        labels = {LABEL_TASK: request.task_id, LABEL_ATTEMPT: str(request.attempt)}
        worker = WorkerContainer(
            request.name, request.profile, request.env, request.mounts, labels,
            tuple(request.worker_args),
        )  # fmt: skip
        options = hardened_options(worker, volume=root, root_label=self.docker.root_label)
        if self.config.runtime == "podman":  # podman's images from docker load live here
            options["image"] = f"localhost/{options['image']}"
        return options

    def _sbatch_args(self, request: SpawnRequest, job_name: str, root: str) -> list[str]:
        profile, node_dir = request.profile, f"{root}/{JOBS_DIR}"
        comment = (
            f"{LABEL_ROOT}={self.docker.root_label} {LABEL_TASK}={request.task_id} "
            f"{LABEL_ATTEMPT}={request.attempt}"
        )
        args = [
            f"--job-name={job_name}", f"--comment={comment}", "--no-requeue", "--export=NONE",
            f"--output={node_dir}/{job_name}.out", f"--chdir={node_dir}", "--nodes=1",
            f"--cpus-per-task={math.ceil(profile.cpus or 1)}",
        ]  # fmt: skip
        if profile.memory:
            args.append(f"--mem={memory_mib(profile.memory)}M")
        minutes = time_limit_min(request.timeout_s, self.config.time_margin_min)
        if minutes is not None:
            args.append(f"--time={minutes}")
        if self.config.partition:
            args.append(f"--partition={self.config.partition}")
        return [*args, str(self._file(job_name, ".sh"))]

    def spawn(self, request: SpawnRequest) -> WorkerRecord:
        self._make_room(request)
        root = node_root(self.docker)
        job_name = archived_worker_name(request.name, request.attempt)
        self.jobs_dir.mkdir(exist_ok=True)
        self.jobs_dir.chmod(0o755)
        for suffix in (".out", ".exit", ".exit.tmp"):
            self._file(job_name, suffix).unlink(missing_ok=True)
        node_exit = f"{root}/{JOBS_DIR}/{job_name}.exit"
        script = batch_script(
            self.config.runtime, self._options(request, root), node_exit, self.config.docker_host
        )
        _write_private(self._file(job_name, ".sh"), script)
        _write_private(self._file(job_name, ".out"), "")  # slurmd keeps its mode, not 0666
        try:
            cluster.submit(self._sbatch_args(request, job_name, root))
        except Exception:
            self._file(job_name, ".sh").unlink(missing_ok=True)
            raise
        return WorkerRecord.just_started(request)

    # --- stopping ----------------------------------------------------------------------------

    def stop(self, name: str, timeout_s: float = 10) -> None:
        """``scancel``: the script stops the container (SIGTERM, SIGKILL after a grace) and
        records its exit; waits until the job has left the queue."""
        job = self._job(name)
        if job is None or not job.running:
            return
        cluster.cancel(job.job_id)

        def gone() -> bool:
            found = self._job(name)
            return found is None or not found.running

        poll_until(gone, timeout_s=timeout_s + STOP_WAIT_S, interval_s=0.5)

    def remove(self, name: str) -> None:
        """Forget the job: cancel it if it still runs, delete its files."""
        job = self._job(name)
        if job is None:
            return
        if job.running:
            cluster.cancel(job.job_id)
        self._remove_files(job.name)

    def _remove_files(self, job_name: str) -> None:
        for suffix in (".sh", ".out", ".exit", ".exit.tmp"):
            self._file(job_name, suffix).unlink(missing_ok=True)

    def tidy(self) -> None:
        """Remove the files of jobs SLURM does not know (a spawn whose ``sbatch`` failed)."""
        if not self.jobs_dir.is_dir():
            return
        known = {job.name for job in cluster.completed_jobs(self.prefix)}
        known |= {job.name for job in cluster.queued_jobs(self.prefix)}
        for script in self.jobs_dir.glob(f"{self.prefix}*.sh"):
            if script.name.removesuffix(".sh") not in known:
                self._remove_files(script.name.removesuffix(".sh"))

    # --- exits -------------------------------------------------------------------------------

    def watch_exits(
        self, callback: Callable[[WorkerRecord], None], stop: threading.Event
    ) -> threading.Thread:
        """SLURM announces no exits to the submitter: poll the queue and the completion log."""
        return poll_exits(self.all, callback, stop, interval_s=self.config.poll_s, name="slurm-exits")
