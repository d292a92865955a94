"""Errors of the manager, each named by the condition it reports, and the CLI's exit codes.

``str(error)`` is one sentence that names the thing that is wrong and how to fix it; the CLI
prints it (or a JSON object with ``--json``) and exits with the error's ``exit_code``, never with a
traceback.
"""

from __future__ import annotations

EXIT_OK = 0
"""Done; for ``wait``, ``run`` and ``result``: every task succeeded."""
EXIT_TASKS_FAILED = 1
"""Finished, but some task did not succeed (failed, timeout, cancelled, invalid or blocked)."""
EXIT_BAD_INPUT = 2
"""The request cannot be carried out as asked: usage, unknown task or profile, malformed file."""
EXIT_ENVIRONMENT = 3
"""The machine is not ready: Docker, an image, the volume or credentials."""
EXIT_NOT_FINISHED = 4
"""Not finished yet: ``wait`` timed out, or ``result`` found no result."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C or SIGTERM."""


class ManagerError(Exception):
    """Base of every error the manager reports to a user."""

    exit_code = EXIT_BAD_INPUT


class BadInput(ManagerError, ValueError):
    """What was asked for is malformed or contradictory."""


class UnknownProfile(ManagerError, LookupError):
    """No profile of that name is configured."""


class ProfilesInvalid(ManagerError, ValueError):
    """The profiles file cannot be used."""


class PlanInvalid(ManagerError, ValueError):
    """A plan file cannot be used; no task of it was written."""


class NoRepository(ManagerError, ValueError):
    """A task names no repository and none is configured: nothing for a worker to clone."""


class PlanFailed(ManagerError, RuntimeError):
    """The planner ran but gave no usable plan."""

    exit_code = EXIT_TASKS_FAILED


class TaskUnknown(ManagerError, LookupError):
    """No task of that id is on the volume."""


class TaskNotSpawnable(ManagerError, RuntimeError):
    """The task's state allows no new attempt now (running, finished, or out of attempts)."""


class DispatcherBusy(ManagerError, RuntimeError):
    """Another dispatcher already serves this orchestration root."""


class EnvironmentNotReady(ManagerError, RuntimeError):
    """Something on the machine must be set up first."""

    exit_code = EXIT_ENVIRONMENT


class DockerUnavailable(EnvironmentNotReady):
    """The Docker engine cannot be reached (not installed, not running, no permission)."""


class ImageMissing(EnvironmentNotReady):
    """A profile's image has not been built."""


class VolumeNotWritable(EnvironmentNotReady):
    """The orchestration root cannot be written by the manager or the workers."""


class CredentialsMissing(EnvironmentNotReady):
    """No credentials for the model were found (and ``--simulate`` was not given)."""


class WorkerCommandMissing(EnvironmentNotReady):
    """The local backend cannot find ``orchestrator-worker``."""


class SpawnFailed(EnvironmentNotReady):
    """The engine refused to create or start a worker."""


class EngineBusy(SpawnFailed):
    """The engine did not answer a spawn in time (overloaded); the task waits for the next round."""


class MirrorUnavailable(EnvironmentNotReady):
    """The manager cannot make or refresh its mirror of a task's repository on the volume."""


class BranchMissing(ManagerError, LookupError):
    """The branch a task starts from does not exist in its repository (or the repository's HEAD
    names a branch that does not exist)."""


class NotFinished(ManagerError, TimeoutError):
    """A wait ran out of time, or a result is not there yet."""

    exit_code = EXIT_NOT_FINISHED
