"""The SLURM cluster as its commands answer: ``sbatch``, ``squeue``, ``sacct --completion``,
``scancel``, ``sinfo``, ``srun``. Each call has a deadline; a command that is missing or does
not answer is one sentence with the fix (:class:`SlurmUnavailable`).

Accounting without slurmdbd: ``sacct`` reads the job completion log (``jobcomp/filetxt``) with
``-c``; the log keeps each ended job's name but not its comment, so a job's name alone says
whose it is (``worker-<root>-<task-id>.attempt-<n>``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime

from ...errors import EngineBusy, EnvironmentNotReady, SpawnFailed

COMMAND_TIMEOUT_S = 30.0
QUEUE_FORMAT = "%i|%j|%T|%V"
"""squeue's columns: job id, name, state, submit time."""
COMPLETION_FIELDS = "JobID,JobName,State,ExitCode,Submit"
COMPLETION_SINCE = "2000-01-01"
"""sacct shows only today's jobs unless told a start."""
RUNNING_STATES = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
     "SIGNALING", "STAGE_OUT", "STOPPED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
)  # fmt: skip
"""squeue states of a job whose script may still run (COMPLETING: it is ending)."""


class SlurmUnavailable(EnvironmentNotReady):
    """The SLURM commands are missing, or the controller does not answer."""


@dataclass(frozen=True)
class Job:
    """One batch job as ``squeue`` or ``sacct --completion`` shows it."""

    job_id: int
    name: str
    state: str
    """SLURM's state, e.g. ``RUNNING``, ``COMPLETED``, ``FAILED``, ``CANCELLED``."""
    exit_code: int | None = None
    """The batch script's exit code once ended (``3`` of ``3:0``); None while queued."""
    submitted: datetime | None = None

    @property
    def running(self) -> bool:
        return self.state.split()[0] in RUNNING_STATES


def _time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        return None


def run_slurm(*args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    """``args`` run (a SLURM command); its output, or SlurmUnavailable/EngineBusy/SpawnFailed
    with the command's own words and the fix."""
    command = args[0]
    if shutil.which(command) is None:
        raise SlurmUnavailable(
            f"The SLURM command {command} is not installed here; install SLURM's client "
            "commands (Debian: apt-get install slurm-client) or use another --backend."
        )
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        raise EngineBusy(
            f"SLURM's {command} did not answer within {timeout_s:g} s; the controller is busy "
            "or down: the task waits for the next round (check with 'sinfo')."
        ) from error
    if done.returncode != 0:
        words = (done.stderr or done.stdout).strip().splitlines()
        reason = words[-1] if words else f"exit {done.returncode}"
        if "Unable to contact slurm controller" in reason or "Connection refused" in reason:
            raise SlurmUnavailable(
                f"The SLURM controller does not answer ({command}: {reason}); start slurmctld "
                "(scripts/engines/slurm.sh up on the test machine) or use another --backend."
            )
        raise SpawnFailed(f"SLURM's {command} failed ({reason}); see 'sinfo' and the job's log.")
    return done.stdout


def queued_jobs(prefix: str) -> list[Job]:
    """This user's jobs in the queue whose names start with ``prefix``."""
    out = run_slurm("squeue", "-h", "--me", "-o", QUEUE_FORMAT)
    jobs = []
    for line in out.splitlines():
        job_id, name, state, submitted = [*line.split("|"), "", "", ""][:4]
        if name.startswith(prefix) and job_id.isdigit():
            jobs.append(Job(int(job_id), name, state, None, _time(submitted)))
    return jobs


def completed_jobs(prefix: str) -> list[Job]:
    """The ended jobs of the completion log whose names start with ``prefix``."""
    out = run_slurm(
        "sacct", "-c", "-n", "-P", "-S", COMPLETION_SINCE, "-o", COMPLETION_FIELDS
    )
    jobs = []
    for line in out.splitlines():
        job_id, name, state, code, submitted = [*line.split("|"), "", "", "", "", ""][:5]
        if not name.startswith(prefix) or not job_id.isdigit():
            continue
        status = code.partition(":")[0]
        exit_code = int(status) if status.isdigit() else None
        jobs.append(Job(int(job_id), name, state, exit_code, _time(submitted)))
    return jobs


def submit(args: list[str]) -> int:
    """``sbatch --parsable ARGS``: the new job's id."""
    out = run_slurm("sbatch", "--parsable", *args)
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise SpawnFailed(f"sbatch answered {out.strip()!r}, not a job id; see 'squeue'.")
    return int(job_id)


def cancel(job_id: int) -> None:
    """``scancel``: SIGTERM to the job's processes, SIGKILL after the cluster's KillWait."""
    run_slurm("scancel", str(job_id))


def summary() -> str:
    """One sentence on the cluster: its partitions and their nodes' states (``sinfo``)."""
    out = run_slurm("sinfo", "-h", "-o", "%P %a %D %T")
    lines = [" ".join(line.split()) for line in out.splitlines() if line.strip()]
    if not lines:
        raise SlurmUnavailable(
            "SLURM answers but has no partition; add one to slurm.conf (PartitionName=...)."
        )
    return "SLURM answers: " + "; ".join(lines) + " (partition available nodes state)"
