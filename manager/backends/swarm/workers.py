"""The Swarm backend: one ``replicated-job`` service per attempt, restart condition none (retries
stay the protocol's), found again by its labels and judged by its Swarm task's state.

The hardening is the Docker backend's, as far as Swarm on Engine 20.10 (API 1.41) can say it;
checked with the engine:

- user ``0:0`` for the runtime, ``CapabilityDrop: ALL`` plus the runtime's capabilities
  (``CapabilityAdd``, API 1.41), memory, CPU and pid limits (``Resources.Limits.Pids``, API
  1.41), the volume at ``/runtime/orchestration``, labels ``orchestrator.*`` on the service and
  its container: as the Docker backend.
- ``no-new-privileges`` has no field in a 1.41 service spec (``Privileges`` takes only
  credential specs and SELinux; an unknown field is dropped without a word). The service runs
  the worker under ``setpriv --no-new-privs`` (util-linux, in every image built from
  ``claude-worker``), so the runtime and everything it starts carry the flag: a setuid or
  setgid binary in the image gives the agent nothing.
- ``--network none`` is refused for services ("network none not found": Swarm's predefined
  networks are ``bridge`` and ``host``), and a service with no network lands on ``bridge``,
  with a route to the host and the internet. Each worker gets a network of its own instead: an
  ``--internal`` overlay network that only it joins, so it has no route anywhere (no gateway
  bridge is attached to an internal network) and sees no other worker. The gateway is reached,
  as with Docker, through its Unix sockets in the volume. The network goes with the service.

Names: a service name must be a DNS label of at most 63 characters, and services cannot be
renamed, so every attempt has its own service (``worker-<root>-<id>-attempt-<n>``, with a hash
when the id does not fit; its network ``<service>-net``). In the views, the newest attempt's
service is ``worker-<root>-<task-id>`` and an earlier one ``worker-<root>-<task-id>.attempt-<n>``,
as with Docker, so logs and recovery find them by the same names.

Swarm places each job on any node the profile's ``placement`` constraints allow, with the
profile's limits. The worker reaches its own node's gateway (a ``global`` service, see
``services.py``) through the node-local socket volume, mounted read-only at
``$ORCHESTRATOR_GATEWAY_DIR``. A job whose node Swarm holds for ``down`` is a lost worker: it is
reported ended (no exit code), and the next attempt lands on a node that is up.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestration_protocol.contract import ENV_GATEWAY_DIR, ENV_GATEWAY_NODE

from ...errors import BadInput, EnvironmentNotReady, SpawnFailed, TaskNotSpawnable
from ...polling import poll_until
from ..base import (
    LABEL_ATTEMPT,
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
    worker_name,
)
from ..docker.connection import DockerConnection, parse_mount
from ..docker.workers import FINISHING_S, RUNTIME_CAPS, WORKER_ROOT, swarm_confinement
from ..exits import poll_exits
from .services import GATEWAY_SOCKETS, socket_mount

ROLE_NETWORK = "worker-network"
NO_NEW_PRIVS = ["setpriv", "--no-new-privs", "orchestrator-worker"]
"""The worker's command: what ``--security-opt no-new-privileges`` does, from inside."""
STOP_GRACE_S = 10
ENDED_STATES = frozenset({"complete", "failed", "shutdown", "rejected", "orphaned", "remove"})
"""Swarm task states after which its container runs no more."""
POLL_S = 0.5
NETWORK_GONE_S = 15.0
"""How long ``remove`` waits for a service's containers to leave its network."""
SERVICE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class SwarmNotReady(EnvironmentNotReady):
    """The engine is not a manager of an active swarm."""


def service_name(task_id: str, attempt: int, scope: str = "") -> str:
    """``worker-<root>-<id>-attempt-<n>`` when that is a valid service name, else the id cut to
    fit, its other characters turned into ``-``, with a hash of the id (no two ids share a name)."""
    prefix = f"worker-{scope}-" if scope else "worker-"
    plain = f"{prefix}{task_id}-attempt-{attempt}"
    if SERVICE_NAME.match(plain):
        return plain
    digest = hashlib.sha256(task_id.encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^A-Za-z0-9-]", "-", task_id)[:24].strip("-")
    return f"{prefix}{cleaned}-{digest}-attempt-{attempt}"


@dataclass(frozen=True)
class Job:
    """One worker service and the state of its Swarm task."""

    service: dict[str, Any]
    task: dict[str, Any] | None
    """Its newest Swarm task; None until the orchestrator has made one."""
    node_down: bool = False
    """The task's node is down (its engine stopped, or the node left): the worker is lost."""

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.service.get("Spec", {}).get("Labels") or {})

    @property
    def task_id(self) -> str:
        return self.labels.get(LABEL_TASK, "")

    @property
    def attempt(self) -> int | None:
        value = self.labels.get(LABEL_ATTEMPT, "")
        return int(value) if value.isdigit() else None

    @property
    def state(self) -> str:
        return str(((self.task or {}).get("Status") or {}).get("State", "new"))

    @property
    def running(self) -> bool:
        return self.state not in ENDED_STATES and not self.node_down

    @property
    def container_id(self) -> str | None:
        status = ((self.task or {}).get("Status") or {}).get("ContainerStatus") or {}
        return status.get("ContainerID") or None

    @property
    def exit_code(self) -> int | None:
        if self.running or self.node_down:
            return None
        status = (self.task or {}).get("Status") or {}
        if self.state == "complete":
            return 0
        code = (status.get("ContainerStatus") or {}).get("ExitCode")
        return code if isinstance(code, int) and self.container_id else None

    @property
    def error(self) -> str | None:
        if self.node_down:
            return f"its node {(self.task or {}).get('NodeID', '?')} is down"
        status = (self.task or {}).get("Status") or {}
        return status.get("Err") or None

    def record(self, name: str) -> WorkerRecord:
        return WorkerRecord(
            name=name,
            task_id=self.task_id,
            attempt=self.attempt,
            running=self.running,
            exit_code=self.exit_code,
            created_at=_parse_time(self.service.get("CreatedAt")),
            profile=self.labels.get(LABEL_PROFILE),
        )


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):  # Go writes nanoseconds; Python takes microseconds
        head, _, rest = value.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(rest + '000000')[:6]}+00:00")
    return None


def _newest(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(tasks, key=lambda task: task.get("CreatedAt", ""), default=None)


class SwarmManager:
    """The engine as a swarm manager: checked before use, and the node the gateway runs on."""

    def __init__(self, docker: DockerConnection) -> None:
        self.docker = docker
        self.node_id = ""
        """This engine's node, where the gateway runs (set by :meth:`check`)."""

    def check(self) -> str:
        """One sentence on the swarm; SwarmNotReady with the fix unless this engine manages one."""
        swarm = self.docker.client.info().get("Swarm") or {}
        state = swarm.get("LocalNodeState") or "inactive"
        if state != "active" or not swarm.get("ControlAvailable"):
            role = "a worker node" if state == "active" else f"swarm: {state}"
            raise SwarmNotReady(
                f"This Docker engine is not a swarm manager ({role}); run 'docker swarm init' "
                "here (or point DOCKER_HOST at a manager), or use --backend docker."
            )
        self.node_id = str(swarm.get("NodeID") or "")
        return f"swarm manager of {swarm.get('Nodes', '?')} node(s) (node {swarm.get('NodeID', '?')})"


    def down_nodes(self) -> set[str]:
        """The nodes Swarm holds for down (their engine stopped answering, or they left)."""
        return {
            str(node["ID"]) for node in self.docker.client.api.nodes()
            if (node.get("Status") or {}).get("State") == "down"
        }


class SwarmWorkers(Workers):
    """Workers as Swarm ``replicated-job`` services, placed by Swarm on any node the profile's
    constraints allow."""

    keeps_warm_pools = False  # a pool worker is a container of one engine, not a Swarm job

    def __init__(self, docker: DockerConnection, swarm: SwarmManager) -> None:
        self.docker = docker
        self.swarm = swarm

    @property
    def client(self) -> Any:
        return self.docker.client

    def spawn_idle(self, request: IdleSpawnRequest) -> WorkerRecord:
        raise BadInput(
            "The swarm backend starts every worker cold; run the warm pool with --backend docker."
        )

    # --- finding jobs ------------------------------------------------------------------------

    def _jobs(self) -> list[Job]:
        from docker.errors import APIError

        try:
            services = self.client.api.services(filters=self.docker.filters())
            if not services:
                return []
            tasks = self.client.api.tasks(filters={"service": [s["ID"] for s in services]})
        except APIError:
            self.swarm.check()  # the sentence with the fix when the swarm is gone
            raise
        by_service: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            by_service.setdefault(task.get("ServiceID", ""), []).append(task)
        down = self.swarm.down_nodes()
        jobs = [Job(s, _newest(by_service.get(s["ID"], []))) for s in services]
        return [
            Job(job.service, job.task, node_down=(job.task or {}).get("NodeID") in down)
            for job in jobs
        ]

    def _named_jobs(self) -> list[tuple[str, Job]]:
        """Every job with its name in the views: the newest attempt of a task is
        ``worker-<id>``, earlier ones ``worker-<id>.attempt-<n>``."""
        jobs = [job for job in self._jobs() if job.task_id]
        newest: dict[str, int] = {}
        for job in jobs:
            newest[job.task_id] = max(newest.get(job.task_id, -1), job.attempt or 0)
        return [
            (
                worker_name(job.task_id, self.docker.scope)
                if (job.attempt or 0) == newest[job.task_id]
                else archived_worker_name(
                    worker_name(job.task_id, self.docker.scope), job.attempt
                ),
                job,
            )
            for job in jobs
        ]

    def _job(self, name: str) -> Job | None:
        for known, job in self._named_jobs():
            if known == name:
                return job
        return None

    def all(self) -> list[WorkerRecord]:
        return [job.record(name) for name, job in self._named_jobs()]

    # --- starting ----------------------------------------------------------------------------

    def _make_room(self, request: SpawnRequest) -> None:
        """Wait briefly for the task's previous worker to end; refuse while it runs."""
        def ended() -> tuple[Job | None] | None:
            job = self._job(request.name)
            return None if job is not None and job.running else (job,)

        found = poll_until(ended, timeout_s=FINISHING_S, interval_s=0.2)
        previous = self._job(request.name) if found is None else found[0]
        if previous is not None and previous.running:
            raise TaskNotSpawnable(
                f"The worker of task {request.task_id} (attempt {previous.attempt}) is still "
                f"running; wait for it, or stop it (orchestrator task cancel {request.task_id})."
            )
        name = service_name(request.task_id, request.attempt, self.docker.scope)
        for job in self._jobs():
            if job.service.get("Spec", {}).get("Name") == name:  # an ended job of this attempt
                self._remove_job(job)

    def _network(self, request: SpawnRequest, name: str) -> str:
        """A network of this worker's own: internal (no route out), joined by nothing else."""
        network = self.client.networks.create(
            f"{name}-net",
            driver="overlay",
            internal=True,
            check_duplicate=True,
            labels={
                LABEL_ROLE: ROLE_NETWORK,
                LABEL_ROOT: self.docker.root_label,
                LABEL_TASK: request.task_id,
                LABEL_ATTEMPT: str(request.attempt),
            },
        )
        return str(network.id)

    def _mounts(self, request: SpawnRequest) -> list[dict[str, Any]]:
        mounts = [
            _mount(self.docker.volume, WORKER_ROOT, read_only=False),
            # this node's gateway sockets (a local volume: each node's engine has its own)
            socket_mount(self.docker.scope, self.docker.root_label, read_only=True),
        ]
        for spec in (*request.profile.mounts, *request.mounts):
            source, bind = parse_mount(spec)
            mounts.append(_mount(source, bind["bind"], read_only=bind["mode"] == "ro"))
        return mounts

    def _task_template(self, request: SpawnRequest, network_id: str) -> dict[str, Any]:
        from docker.utils import parse_bytes

        profile = request.profile
        labels = self._labels(request)
        env = {**request.env, "ORCHESTRATION_DIR": WORKER_ROOT, ENV_GATEWAY_DIR: GATEWAY_SOCKETS,
               ENV_GATEWAY_NODE: "{{.Node.ID}}"}
        limits: dict[str, int] = {}
        if profile.memory:
            limits["MemoryBytes"] = parse_bytes(profile.memory)
        if profile.cpus:
            limits["NanoCPUs"] = int(profile.cpus * 1e9)
        if profile.pids_limit:
            limits["Pids"] = profile.pids_limit
        container_confinement, task_confinement = swarm_confinement()
        return {
            **task_confinement,
            "ContainerSpec": {
                **container_confinement,
                "Image": profile.image,
                "Command": NO_NEW_PRIVS,
                "Args": request.worker_args,
                "Env": [f"{key}={value}" for key, value in env.items()],
                "User": "0:0",
                "Labels": labels,
                "Mounts": self._mounts(request),
                "CapabilityDrop": ["ALL"],
                "CapabilityAdd": [f"CAP_{cap}" for cap in RUNTIME_CAPS],
                "StopGracePeriod": STOP_GRACE_S * 1_000_000_000,
            },
            "Resources": {"Limits": limits},
            "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
            "Networks": [{"Target": network_id}],
            "Placement": {"Constraints": list(profile.placement)},
        }

    def _labels(self, request: SpawnRequest) -> dict[str, str]:
        return {
            LABEL_TASK: request.task_id,
            LABEL_ROLE: ROLE_WORKER,
            LABEL_ATTEMPT: str(request.attempt),
            LABEL_ROOT: self.docker.root_label,
            LABEL_PROFILE: request.profile.name,
        }

    def spawn(self, request: SpawnRequest) -> WorkerRecord:
        from docker.errors import APIError

        self.swarm.check()
        self._make_room(request)
        name = service_name(request.task_id, request.attempt, self.docker.scope)
        try:
            network_id = self._network(request, name)
            self.client.api.create_service(
                self._task_template(request, network_id),
                name=name,
                labels=self._labels(request),
                mode={"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
            )
        except APIError as error:
            self._remove_network(f"{name}-net", wait_s=0)
            if error.status_code == 409:
                raise TaskNotSpawnable(
                    f"A worker service {name} appeared meanwhile; another manager is spawning "
                    "this task."
                ) from error
            raise SpawnFailed(
                f"Swarm refused to create the service {name}: {error.explanation}; check the "
                "profile's settings."
            ) from error
        return WorkerRecord.just_started(request)

    # --- reading -----------------------------------------------------------------------------

    def exit_info(self, name: str) -> ExitInfo:
        job = self._job(name)
        if job is None:
            return ExitInfo(exit_code=None, error="service is gone")
        container = self._local_container(job)
        oom = bool(container.attrs.get("State", {}).get("OOMKilled")) if container else False
        return ExitInfo(exit_code=job.exit_code, oom_killed=oom, error=job.error)

    def _local_container(self, job: Job) -> Any:
        """The job's container when it runs on this engine's node; None elsewhere or gone."""
        if job.container_id is None:
            return None
        return self.docker.container(job.container_id)

    def logs(self, name: str, *, tail: int | None = None) -> str:
        job = self._job(name)
        if job is None:
            return ""
        from docker.errors import APIError

        try:
            chunks = self.client.api.service_logs(
                job.service["ID"], stdout=True, stderr=True, tail=tail if tail else "all"
            )
            return b"".join(bytes(chunk) for chunk in chunks).decode(errors="replace")
        except APIError:  # removed meanwhile, or its node is gone
            return ""

    def follow_logs(self, name: str) -> Iterator[str]:
        """From the container (jobs run on this engine's node), until it ends; the service's
        logs so far when the container is gone."""
        job = self._job(name)
        container = self._local_container(job) if job is not None else None
        if container is None:
            yield self.logs(name)
            return
        for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=True):
            yield bytes(chunk).decode(errors="replace")

    # --- stopping ----------------------------------------------------------------------------

    def stop(self, name: str, timeout_s: float = 10) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``: through the container on this node (the
        job stays, with its exit code and logs); a job elsewhere is removed instead (Swarm
        stops its container with the same grace)."""
        from docker.errors import APIError

        job = self._job(name)
        if job is None or not job.running:
            return
        container = self._local_container(job)
        if container is None:
            self._remove_job(job)
            return
        with contextlib.suppress(APIError):
            if container.status == "paused":
                container.unpause()
            container.stop(timeout=int(timeout_s))

    def remove(self, name: str) -> None:
        job = self._job(name)
        if job is not None:
            self._remove_job(job)

    def _remove_job(self, job: Job) -> None:
        from docker.errors import APIError, NotFound

        with contextlib.suppress(NotFound, APIError):
            self.client.api.remove_service(job.service["ID"])
        self._remove_network(f"{job.service['Spec']['Name']}-net", wait_s=NETWORK_GONE_S)

    def _remove_network(self, name: str, *, wait_s: float) -> None:
        """Remove a worker's network once its container has left it (Swarm removes a service's
        containers after the service)."""
        from docker.errors import APIError, NotFound

        def removed() -> bool:
            try:
                self.client.networks.get(name).remove()
            except NotFound:
                return True
            except APIError:
                return False  # still in use; cleanup_networks takes it later
            return True

        poll_until(removed, timeout_s=wait_s, interval_s=0.25)

    def tidy(self) -> None:
        """Remove the worker networks a manager that died mid-spawn left."""
        self.cleanup_networks()

    def cleanup_networks(self) -> list[str]:
        """Remove this root's worker networks whose service is gone."""
        services = {s["Spec"]["Name"] for s in self.client.api.services(filters=self.docker.filters())}
        filters = {"label": [f"{LABEL_ROLE}={ROLE_NETWORK}", f"{LABEL_ROOT}={self.docker.root_label}"]}
        removed = []
        for network in self.client.networks.list(filters=filters):
            if network.name.removesuffix("-net") not in services:
                self._remove_network(network.name, wait_s=0)
                removed.append(network.name)
        return removed

    # --- exits -------------------------------------------------------------------------------

    def watch_exits(
        self, callback: Callable[[WorkerRecord], None], stop: threading.Event
    ) -> threading.Thread:
        """Swarm reports task states to its managers from every node (container events stay on
        each node), so poll them: each job that ends is reported once."""
        return poll_exits(self.all, callback, stop, interval_s=POLL_S, name="swarm-exits")


def _mount(source: str, target: str, *, read_only: bool) -> dict[str, Any]:
    kind = "bind" if source.startswith("/") else "volume"
    return {"Type": kind, "Source": source, "Target": target, "ReadOnly": read_only}
