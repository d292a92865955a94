"""The Docker engine's workers: one hardened container per attempt, found again by its labels.

Containers are named ``worker-<root>-<task-id>`` (``<root>``: the root's short id, so roots
with the same task ids share an engine); an ended one of an earlier attempt is renamed to
``worker-<root>-<task-id>.attempt-<n>`` before the next starts, so its logs stay readable until
``orchestrator cleanup``.

A worker container has no network (``--network none``: only loopback; the gateway is reached
through its Unix sockets in the volume) and no secret. Its runtime starts as root with only the
capabilities it needs to run the agent as the profile's uid and to keep the protocol to itself
(SETUID, SETGID, CHOWN, DAC_OVERRIDE, FOWNER, KILL); the agent, as a non-root uid, has none, and
``no-new-privileges`` keeps it so. The volume is mounted at ``/runtime/orchestration``, under a
directory only root may enter, so the agent cannot reach the protocol's files.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...errors import EngineBusy, SpawnFailed, TaskNotSpawnable
from ...profiles import Profile
from ..base import (
    LABEL_ATTEMPT,
    LABEL_POOL,
    LABEL_PROFILE,
    LABEL_ROLE,
    LABEL_ROOT,
    LABEL_TASK,
    ROLE_WORKER,
    ExitInfo,
    IdleSpawnRequest,
    SpawnRequest,
    WorkerRecord,
    Workers,
    archived_worker_name,
)
from .connection import DockerConnection, parse_mount

WORKER_ROOT = "/runtime/orchestration"
"""Where workers see the volume: ``/runtime`` is root's alone (0700) in the worker image."""
RUNTIME_CAPS = ["SETUID", "SETGID", "CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL"]
TMP_BYTES = 2 * 1024**3
"""Size of a worker's ``/tmp`` tmpfs (clone, home, temporary files), at most half its memory."""
WORKER_LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}
"""Docker's json-file log of a worker container: rotated, so it cannot fill the host's disk."""
FINISHING_S = 5
"""How long a spawn waits for the previous container of the task to exit."""
EXITED = re.compile(r"Exited \((-?\d+)\)")


@dataclass(frozen=True)
class WorkerContainer:
    """What one worker container is for: its name, profile, environment, extra mounts, labels
    (besides the role, root and profile ones) and command."""

    name: str
    profile: Profile
    env: dict[str, str]
    mounts: tuple[str, ...]
    labels: dict[str, str]
    command: tuple[str, ...]


def hardened_options(worker: WorkerContainer, *, volume: str, root_label: str) -> dict[str, Any]:
    """The container options (docker-py ``containers.create`` keywords) every worker gets: no
    network, no capability but the runtime's, no new privileges, the profile's limits, the
    volume ``volume`` at ``/runtime/orchestration``. The Docker engine passes them to docker-py;
    the SLURM engine renders them as a ``docker run``/``podman run`` command line."""
    profile = worker.profile
    volumes = {volume: {"bind": WORKER_ROOT, "mode": "rw"}}
    for spec in (*profile.mounts, *worker.mounts):
        source, bind = parse_mount(spec)
        volumes[source] = bind
    kwargs: dict[str, Any] = {
        "image": profile.image,
        "command": list(worker.command),
        "name": worker.name,
        "labels": {
            **worker.labels,
            LABEL_ROLE: ROLE_WORKER,
            LABEL_ROOT: root_label,
            LABEL_PROFILE: profile.name,
        },
        "environment": {**worker.env, "ORCHESTRATION_DIR": WORKER_ROOT},
        "user": "0:0",
        "cap_drop": ["ALL"],
        "cap_add": RUNTIME_CAPS,
        "security_opt": ["no-new-privileges"],
        "network_mode": "none",
        "volumes": volumes,
        "detach": True,
    }
    kwargs.update(worker_confinement(profile))
    if profile.memory:
        kwargs["mem_limit"] = profile.memory
    if profile.cpus:
        kwargs["nano_cpus"] = int(profile.cpus * 1e9)
    if profile.pids_limit:
        kwargs["pids_limit"] = profile.pids_limit
    return kwargs


def _record(summary: dict[str, Any]) -> WorkerRecord | None:
    labels = summary.get("Labels") or {}
    task_id = labels.get(LABEL_TASK)
    pool = labels.get(LABEL_POOL)
    if not task_id and not pool:
        return None
    names = summary.get("Names") or [""]
    state = summary.get("State", "")
    match = EXITED.search(summary.get("Status", ""))
    attempt = labels.get(LABEL_ATTEMPT, "")
    created = summary.get("Created")
    return WorkerRecord(
        name=names[0].lstrip("/"),
        task_id=task_id or "",
        attempt=int(attempt) if attempt.isdigit() else None,
        running=state in ("running", "restarting", "paused"),
        exit_code=int(match.group(1)) if match else None,
        created_at=datetime.fromtimestamp(created, UTC) if created else None,
        profile=labels.get(LABEL_PROFILE),
        started=state != "created",
        pool=pool,
    )


class DockerWorkers(Workers):
    """Workers as containers of the local Docker engine."""

    def __init__(self, docker: DockerConnection) -> None:
        self.docker = docker

    @property
    def client(self) -> Any:
        return self.docker.client

    def _archive_previous(self, name: str, task_id: str) -> None:
        """Make the worker's name free: keep our earlier attempt's ended container under an
        archived name; remove one that never started or belongs to another root."""
        from docker.errors import NotFound

        try:
            previous = self.client.containers.get(name)
        except NotFound:
            return
        labels = previous.labels or {}
        ours = labels.get(LABEL_ROOT) == self.docker.root_label and labels.get(LABEL_TASK) == task_id
        if previous.status == "running" and ours:
            with contextlib.suppress(Exception):  # it may be exiting after its result
                previous.wait(timeout=FINISHING_S)
            previous.reload()
        if previous.status in ("running", "restarting", "paused"):
            owner = "" if ours else f" for another orchestration root ({labels.get(LABEL_ROOT)})"
            raise TaskNotSpawnable(
                f"A container named {name} is still running{owner}; wait for it, or stop it "
                f"(orchestrator task cancel {task_id}, or docker stop {name})."
            )
        if not ours or previous.status == "created":
            previous.remove(force=True)  # never ran, or not ours: nothing worth keeping
            return
        attempt = labels.get(LABEL_ATTEMPT)
        target = archived_worker_name(name, int(attempt) if attempt and attempt.isdigit() else 0)
        with contextlib.suppress(NotFound):
            self.client.containers.get(target).remove(force=True)
        previous.rename(target)

    def _run_kwargs(self, request: SpawnRequest) -> dict[str, Any]:
        labels = {
            LABEL_TASK: request.task_id,
            LABEL_ATTEMPT: str(request.attempt),
        }
        return self._hardened(
            request.name, request.profile, request.env, request.mounts, labels, request.worker_args
        )

    def _hardened(
        self,
        name: str,
        profile: Profile,
        env: dict[str, str],
        mounts: tuple[str, ...],
        labels: dict[str, str],
        command: list[str] | tuple[str, ...],
    ) -> dict[str, Any]:
        """The container options every worker gets, a task's or a pool's."""
        return hardened_options(
            WorkerContainer(name, profile, env, mounts, labels, tuple(command)),
            volume=self.docker.volume,
            root_label=self.docker.root_label,
        )

    def _create(self, kwargs: dict[str, Any], task_id: str | None) -> str:
        """Create the container; its id. A name still taken by the task's previous container
        (a later attempt) is made free first (:meth:`_archive_previous`), only then: the first
        attempt of a task costs no look-up."""
        from docker.errors import APIError
        from docker.models.containers import _create_container_args

        arguments = _create_container_args({**kwargs, "version": self.client.api._version})
        try:
            return str(self.client.api.create_container(**arguments)["Id"])
        except APIError as error:
            if error.status_code != 409 or task_id is None:
                raise
        self._archive_previous(kwargs["name"], task_id)
        return str(self.client.api.create_container(**arguments)["Id"])

    def _create_and_start(self, kwargs: dict[str, Any], task_id: str | None = None) -> None:
        """Two calls to the engine, create and start (docker-py's ``containers.create`` would
        inspect the new container in between)."""
        from docker.errors import APIError
        from requests.exceptions import RequestException

        name = kwargs["name"]
        try:
            container = self._create(kwargs, task_id)
        except RequestException as error:  # an overloaded engine: not this task's fault
            raise EngineBusy(
                f"The Docker engine did not answer while creating {name} ({type(error).__name__}); "
                "it is overloaded: the task waits for the next round (lower --max-workers if "
                "this repeats)."
            ) from error
        except APIError as error:
            if error.status_code == 409:
                raise TaskNotSpawnable(
                    f"A container named {name} appeared meanwhile; another manager "
                    "is spawning this task."
                ) from error
            raise SpawnFailed(
                f"Docker refused to create {name}: {error.explanation}; check the "
                "profile's settings."
            ) from error
        try:
            self.client.api.start(container)
        except RequestException:  # the engine got the request and may still start it: the
            return  # worker claims its task, or its container stays created and is replaced
        except APIError as error:
            with contextlib.suppress(APIError):
                self.client.api.remove_container(container, force=True)
            raise SpawnFailed(
                f"Docker could not start {name}: {error.explanation}; check the "
                "profile's image, network and mounts."
            ) from error

    def spawn(self, request: SpawnRequest) -> WorkerRecord:
        self._create_and_start(self._run_kwargs(request), request.task_id)
        return WorkerRecord.just_started(request)

    def spawn_idle(self, request: IdleSpawnRequest) -> WorkerRecord:
        labels = {LABEL_POOL: request.pool}
        self._create_and_start(
            self._hardened(
                request.name,
                request.profile,
                request.env,
                request.mounts,
                labels,
                request.worker_args,
            )
        )
        return WorkerRecord.idle_started(request)

    def all(self) -> list[WorkerRecord]:
        summaries = self.client.api.containers(all=True, filters=self.docker.filters())
        records = (_record(summary) for summary in summaries)
        return [record for record in records if record is not None]

    def exit_info(self, name: str) -> ExitInfo:
        container = self.docker.container(name)
        if container is None:
            return ExitInfo(exit_code=None, error="container is gone")
        state = container.attrs.get("State", {})
        return ExitInfo(
            exit_code=state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
            error=state.get("Error") or None,
        )

    def logs(self, name: str, *, tail: int | None = None) -> str:
        container = self.docker.container(name)
        if container is None:
            return ""
        data = container.logs(stdout=True, stderr=True, tail=tail if tail else "all")
        return bytes(data).decode(errors="replace")

    def stop(self, name: str, timeout_s: float = 10) -> None:
        from docker.errors import APIError

        container = self.docker.container(name)
        if container is not None:
            with contextlib.suppress(APIError):
                if container.status == "paused":  # a paused container cannot be stopped
                    container.unpause()
                container.stop(timeout=int(timeout_s))

    def remove(self, name: str) -> None:
        from docker.errors import APIError

        container = self.docker.container(name)
        if container is not None:
            with contextlib.suppress(APIError):
                container.remove(force=True)

    def watch_exits(
        self, callback: Callable[[WorkerRecord], None], stop: threading.Event
    ) -> threading.Thread:
        thread = threading.Thread(
            target=self._follow_exits, args=(callback, stop), name="docker-exits", daemon=True
        )
        thread.start()
        return thread

    def _follow_exits(
        self, callback: Callable[[WorkerRecord], None], stop: threading.Event
    ) -> None:
        filters = {"type": "container", "event": "die", **self.docker.filters()}
        while not stop.is_set():
            try:
                stream = self.client.events(filters=filters, decode=True)
            except Exception:  # engine restarting: try again shortly
                stop.wait(2)
                continue
            closer = threading.Thread(target=_close_when, args=(stop, stream), daemon=True)
            closer.start()
            try:
                for event in stream:
                    record = _exit_record(event)
                    if record is not None:
                        callback(record)
            except Exception:  # the stream broke (engine restart, close()): reconnect
                stop.wait(1)


def worker_confinement(profile: Profile) -> dict[str, Any]:
    """What bounds a worker container beyond its user, capabilities, network and caps (issue 16):
    an init as pid 1 that reaps the agent's orphans (tini, ``--init``); a read-only root
    filesystem with a sized tmpfs at ``/tmp`` (executable: the clone, the agent's home and its
    temporary files live there), so what the agent writes fills that tmpfs (ENOSPC), never the
    host's disk; Docker's own log of the container rotated (json-file, 3 files of 10 MB).
    The tmpfs counts against the memory limit, so it takes at most half of it."""
    size = TMP_BYTES
    if profile.memory:
        from docker.utils import parse_bytes

        size = min(size, parse_bytes(profile.memory) // 2)
    return {
        "init": True,
        "read_only": True,
        "tmpfs": {"/tmp": f"size={size},mode=1777,exec"},
        "log_config": {"Type": "json-file", "Config": dict(WORKER_LOG_OPTIONS)},
    }


def swarm_confinement() -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`worker_confinement` as a Swarm service on API 1.41 can say it: the fields to add
    to the ``ContainerSpec`` (an init) and to the ``TaskTemplate`` (the rotated log). Not the
    read-only root: a 1.41 tmpfs mount takes only a size and a mode, and Docker mounts it
    ``noexec``, where the agent could run nothing it built (``TmpfsOptions.Options``, API 1.46,
    would allow ``exec``)."""
    log = {"Name": "json-file", "Options": dict(WORKER_LOG_OPTIONS)}
    return {"Init": True}, {"LogDriver": log}


def _close_when(stop: threading.Event, stream: Any) -> None:
    stop.wait()
    with contextlib.suppress(Exception):
        stream.close()


def _exit_record(event: dict[str, Any]) -> WorkerRecord | None:
    attributes = (event.get("Actor") or {}).get("Attributes") or {}
    task_id = attributes.get(LABEL_TASK)
    pool = attributes.get(LABEL_POOL)
    if not task_id and not pool:
        return None
    attempt = attributes.get(LABEL_ATTEMPT, "")
    code = attributes.get("exitCode", "")
    return WorkerRecord(
        name=attributes.get("name") or "",
        task_id=task_id or "",
        attempt=int(attempt) if attempt.isdigit() else None,
        running=False,
        exit_code=int(code) if code.lstrip("-").isdigit() else None,
        profile=attributes.get(LABEL_PROFILE),
        pool=pool,
    )
