"""Starting workers: what a worker gets (env, secrets, network) and whether a task may start.

:func:`prepare_spawning` does the per-command work once (root, secrets, simulation);
:meth:`SpawnContext.mirror` makes or refreshes the volume's mirror of a task's repository once
per command (workers clone from it);
:func:`spawn_attempt` starts one attempt; :func:`spawn_task` is the ``spawn`` command: it checks
the task's state with the protocol's own :func:`next_attempt` first.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestration_protocol import (
    AgentKind,
    Task,
    TaskKind,
    TaskSnapshot,
    TaskState,
    next_attempt,
    read_task_state,
    utc_now,
)
from orchestration_protocol import contract as worker_env
from orchestration_protocol.gateway import api_socket, connect_unix

from ..backends import Backend, WorkerRecord
from ..backends.services import DEFAULT_UPSTREAM, GatewaySpec, require_external_gateway
from ..config import GATEWAY_SIMULATION_ENV, ManagerSettings
from ..credentials import (
    MODEL_SECRETS,
    collect_secrets,
    require_model_credentials,
)
from ..errors import BadInput, MirrorUnavailable, NoRepository, TaskNotSpawnable, TaskUnknown
from ..git.mirror import ensure_mirror, require_base
from ..profiles import Profile, load_profiles, resolve_profile
from .preflight import prepare_root
from .sandbox import check_mounts, check_network, check_volume

GATEWAY_SECRETS = (
    *MODEL_SECRETS,
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
)
"""The secrets the gateway gets; git credentials stay with the manager (mirror, push)."""
MIRROR_REFRESH_S = 60.0
"""A long command (``dispatch``) refreshes a mirror again when its last refresh is this old."""


@dataclass
class SpawnContext:
    """What every spawn of one command shares: settings, backend, secrets, extra env."""

    settings: ManagerSettings
    backend: Backend
    secrets: dict[str, str] = field(repr=False)
    env: dict[str, str]
    network: str | None
    checked_profiles: set[str] = field(default_factory=set)
    mirrors: dict[str, tuple[float, Path | MirrorUnavailable]] = field(default_factory=dict)
    mirror_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    gateway_spec: GatewaySpec | None = field(default=None, repr=False)
    """The managed gateway's spec: started again before a spawn when it stopped (idle stop)."""

    def ensure_gateway(self) -> None:
        """Start the managed gateway again if it does not answer (it stops itself when idle)."""
        if self.gateway_spec is None:
            return
        try:
            connect_unix(api_socket(self.settings.layout), timeout_s=2).close()
        except OSError:
            self.backend.services.start_gateway(self.gateway_spec)

    def profile(self, name: str | None) -> Profile:
        return resolve_profile(name, self.settings.root, self.settings.profiles_path)

    def preflight(self, name: str | None) -> Profile:
        """The profile, checked against the backend once per command; its mounts and the
        command's are checked against the mount policy first (MountRefused)."""
        profile = self.profile(name)
        if profile.name not in self.checked_profiles:
            check_mounts(
                [*profile.mounts, *self.settings.mounts],
                volume=self.settings.volume,
                protected=[str(self.settings.root)],
                docker_host=self.settings.docker_host,
            )
            self.backend.doctor.preflight(profile)
            if profile.network and self.settings.gateway == "managed":
                self.backend.services.connect_gateway(profile.network)
            self.checked_profiles.add(profile.name)
        return profile

    def mirror(self, task: Task) -> Path:
        """The volume's mirror of the task's repository, made or refreshed with the manager's
        credentials on first use in this command (and again after ``MIRROR_REFRESH_S``). Raises
        NoRepository when the task names none and none is configured (before any container
        starts), MirrorUnavailable, also for later tasks of the same repository until the next
        refresh is due."""
        url = task.repo or self.settings.repo_url
        if not url:
            raise NoRepository(
                f"Task {task.id} names no repository and none is configured; give --repo URL "
                "(or set REPO_URL), add \"repo\" to the task, or use 'orchestrator run', which "
                "starts from an empty repository in the volume."
            )
        mirror = self.mirror_url(url)
        require_base(mirror, url, task.branch or self.settings.repo_branch)
        return mirror

    def mirror_url(self, url: str) -> Path:
        """The volume's mirror of ``url``, made or refreshed as :meth:`mirror` says."""
        with self.mirror_lock:
            known = self.mirrors.get(url)
            if known is None or time.monotonic() - known[0] > MIRROR_REFRESH_S:
                try:
                    found: Path | MirrorUnavailable = ensure_mirror(
                        self.settings.layout, url, credentials=self.secrets
                    )
                except MirrorUnavailable as error:
                    found = error
                known = self.mirrors[url] = (time.monotonic(), found)
        if isinstance(known[1], MirrorUnavailable):
            raise MirrorUnavailable(str(known[1]))
        return known[1]


def prepare_spawning(settings: ManagerSettings, backend: Backend) -> SpawnContext:
    """Check the root, gather the manager's secrets and model settings, start the scripted model
    if simulating, and the gateway that holds the credentials workers never get."""
    check_widening(settings)
    backend.doctor.require_engine()
    prepare_root(settings, backend)
    secrets = collect_secrets()
    env = dict(settings.worker_env)
    networks = [settings.network] if settings.network else []
    if settings.simulate:
        for name in ("ANTHROPIC_MODEL", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX"):
            env.pop(name, None)
    if settings.gateway == "external":
        require_external_gateway(settings.layout)
        return SpawnContext(settings, backend, secrets, env, settings.network)
    if settings.simulate:
        simulation = backend.services.start_scripted_model()
        spec = GatewaySpec(
            upstream=simulation.upstream,
            credentials=simulation.credentials,
            networks=tuple(dict.fromkeys([*networks, *filter(None, [simulation.network])])),
            env={k: v for k, v in settings.gateway_env.items() if k in GATEWAY_SIMULATION_ENV},
        )
    else:
        spec = GatewaySpec(
            upstream=settings.upstream or DEFAULT_UPSTREAM,
            credentials={name: value for name, value in secrets.items() if name in GATEWAY_SECRETS},
            networks=tuple(networks),
            env=dict(settings.gateway_env),
        )
    backend.services.start_gateway(spec)
    return SpawnContext(settings, backend, secrets, env, settings.network, gateway_spec=spec)


def check_widening(settings: ManagerSettings) -> None:
    """Refuse (MountRefused, one sentence) a volume, network or mount that would give workers
    more than their sandbox, whoever asked: checked before anything starts."""
    check_volume(settings.volume or "", settings.docker_host)
    profiles = load_profiles(settings.root, settings.profiles_path)
    configured = {settings.configured_network, *(p.network for p in profiles.values())}
    check_network(settings.network, {name for name in configured if name})
    check_mounts(
        settings.mounts,
        volume=settings.volume,
        protected=[str(settings.root)],
        docker_host=settings.docker_host,
    )


def worker_env_for(context: SpawnContext, task: Task, profile: Profile) -> dict[str, str]:
    """The plain environment of a task's worker (no secrets: those go as files)."""
    return worker_env_named(context, context.backend.names.worker(task.id), profile)


def worker_env_named(context: SpawnContext, name: str, profile: Profile) -> dict[str, str]:
    """The plain environment of the worker ``name`` (a task's, or a warm pool's)."""
    settings = context.settings
    env = dict(context.env)
    env.update(profile.env)
    env[worker_env.ENV_WORKER_ID] = name
    env.update(context.backend.names.worker_env(name, profile))
    if profile.egress_allow:
        env[worker_env.ENV_EGRESS_ALLOW] = ",".join(profile.egress_allow)
    env[worker_env.ENV_PROFILE] = profile.name
    if profile.check is not None:
        env[worker_env.ENV_PROFILE_CHECK] = json.dumps(profile.check)
    if settings.repo_url:
        env[worker_env.ENV_REPO_URL] = settings.repo_url
    if settings.repo_branch:
        env[worker_env.ENV_REPO_BRANCH] = settings.repo_branch
    if settings.lease_s:
        env[worker_env.ENV_LEASE_S] = f"{settings.lease_s:g}"
    if settings.heartbeat_s:
        env[worker_env.ENV_HEARTBEAT_S] = f"{settings.heartbeat_s:g}"
    if profile.model and not settings.simulate:
        env.setdefault(worker_env.ENV_MODEL, profile.model)
    return env


def spawn_attempt(
    context: SpawnContext,
    task: Task,
    attempt: int,
    profile_name: str | None = None,
    *,
    force: bool = False,
) -> WorkerRecord:
    """Start the worker of one attempt (preflight of its profile once per command)."""
    from ..backends.base import SpawnRequest

    profile = context.preflight(profile_name or task.profile)
    managed = context.settings.gateway == "managed"  # else the gateway holds the credential
    calls_model = task.agent == AgentKind.CLAUDE and task.kind != TaskKind.CHECK  # a check has no agent
    if calls_model and not context.settings.simulate and managed:
        require_model_credentials(context.secrets, context.settings.model_switches)
    context.mirror(task)
    context.ensure_gateway()
    request = SpawnRequest(
        task_id=task.id,
        attempt=attempt,
        name=context.backend.names.worker(task.id),
        profile=profile,
        env=worker_env_for(context, task, profile),
        mounts=tuple(context.settings.mounts),
        force=force,
        timeout_s=task.timeout_s,
    )
    return context.backend.workers.spawn(request)


def why_not_spawnable(snapshot: TaskSnapshot, state: TaskState) -> str:
    """One sentence: why no attempt of this task may start now, and what to do."""
    task_id = snapshot.task_id
    if snapshot.cancel is not None and not state.is_final:
        return f"Task {task_id} has a cancel request; it will not start again."
    if state == TaskState.RUNNING:
        worker = snapshot.claim.worker_id if snapshot.claim else "a worker"
        return f"Task {task_id} is running (attempt {snapshot.attempt}, {worker}); wait for it or cancel it."
    if state == TaskState.BLOCKED:
        deps = ", ".join(snapshot.task.depends_on) if snapshot.task else ""
        return f"Task {task_id} waits for its dependencies ({deps}) to succeed first."
    if state == TaskState.SUCCESS:
        return f"Task {task_id} already succeeded; create a new task to do more."
    if state == TaskState.CANCELLED:
        return f"Task {task_id} was cancelled; run 'orchestrator task retry {task_id}' to run it again."
    return (
        f"Task {task_id} ended {state.value} after {snapshot.attempt} of "
        f"{snapshot.task.max_attempts if snapshot.task else '?'} attempts; run "
        f"'orchestrator task retry {task_id}' to run it again."
    )


def spawn_task(
    context: SpawnContext, task_id: str, profile_name: str | None = None
) -> WorkerRecord:
    """The ``spawn`` command: start the next attempt of a task if its state allows one."""
    layout = context.settings.layout
    if not layout.task_file(task_id).exists():
        raise TaskUnknown(
            f"No task {task_id!r} in {layout.tasks_dir}; create it first "
            "(orchestrator task create, or write tasks/<id>.json)."
        )
    snapshot, state = read_task_state(layout, task_id, now=utc_now())
    if snapshot.task is None:
        problem = snapshot.problems[0] if snapshot.problems else f"task {task_id} is unreadable"
        raise BadInput(f"{problem}")
    attempt = next_attempt(snapshot, state)
    if attempt is None:
        raise TaskNotSpawnable(why_not_spawnable(snapshot, state))
    return spawn_attempt(context, snapshot.task, attempt, profile_name)
