"""What runs on the Docker engine, for every root on it: the running containers labelled with a
root (``orchestrator.root``: gateways, scripted models, workers, warm pool workers) and any
other running container with a root mounted at ``/orchestration`` (a Compose stack's
dispatcher, dashboard and gateway, run.sh's manager, a Swarm task on this node), grouped by root.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..base import LABEL_POOL, LABEL_ROLE, LABEL_ROOT, LABEL_TASK, ROLE_WORKER, root_scope
from ..running import EngineRoot, Kind, RunningThing, cleanup_hint
from ..services import ROLE_GATEWAY, ROLE_MODEL
from .connection import DockerConnection

ROOT_MOUNT = "/orchestration"
"""Where the containers of the project see their root."""
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
SWARM_SERVICE = "com.docker.swarm.service.name"
IDLE_STOP_ENV = "GATEWAY_IDLE_STOP_S"
KINDS = {ROLE_GATEWAY: Kind.GATEWAY, ROLE_MODEL: Kind.SCRIPTED_MODEL, ROLE_WORKER: Kind.WORKER}
"""The things a root's ``orchestrator.role`` names; other roles (the doctor's probe) pass."""


def root_of(summary: dict[str, Any]) -> str | None:
    """A running container's root as the engine labels roots: its ``orchestrator.root``
    label, else the mount at ``/orchestration`` (``volume:NAME`` or ``bind:/path``)."""
    labels = summary.get("Labels") or {}
    if labels.get(LABEL_ROOT):
        return str(labels[LABEL_ROOT])
    for mount in summary.get("Mounts") or []:
        if mount.get("Destination") != ROOT_MOUNT:
            continue
        if mount.get("Type") == "volume" and mount.get("Name"):
            return f"volume:{mount['Name']}"
        if mount.get("Type") == "bind" and mount.get("Source"):
            return f"bind:{mount['Source']}"
    return None


def _kind(labels: dict[str, str]) -> Kind | None:
    if LABEL_ROLE not in labels:
        return Kind.OTHER
    kind = KINDS.get(labels[LABEL_ROLE])
    if kind is Kind.WORKER and labels.get(LABEL_POOL):
        return Kind.POOL_WORKER
    return kind


def _service(summary: dict[str, Any], labels: dict[str, str]) -> str:
    if labels.get(COMPOSE_PROJECT):
        return f"compose {labels[COMPOSE_PROJECT]}/{labels.get(COMPOSE_SERVICE, '?')}"
    if labels.get(SWARM_SERVICE):
        return f"swarm service {labels[SWARM_SERVICE]}"
    return f"image {summary.get('Image', '?')}"


def thing_of(docker: DockerConnection, summary: dict[str, Any]) -> RunningThing | None:
    """A running container as a running thing (None for the doctor's own probe)."""
    labels = summary.get("Labels") or {}
    kind = _kind(labels)
    if kind is None:
        return None
    name = (summary.get("Names") or ["?"])[0].lstrip("/")
    created = summary.get("Created")
    thing = RunningThing(
        kind=kind,
        name=name,
        started_at=datetime.fromtimestamp(created, UTC) if created else None,
        task_id=labels.get(LABEL_TASK),
        pool=labels.get(LABEL_POOL),
        service=_service(summary, labels) if kind is Kind.OTHER else None,
    )
    return _with_gateway_facts(docker, thing) if kind is Kind.GATEWAY else thing


def _with_gateway_facts(docker: DockerConnection, thing: RunningThing) -> RunningThing:
    """A gateway's start (not its creation: it may have stopped when idle and started again)
    and the ``GATEWAY_IDLE_STOP_S`` it runs with."""
    container = docker.container(thing.name)
    if container is None:
        return thing
    started = container.attrs.get("State", {}).get("StartedAt", "")
    env = dict(item.partition("=")[::2] for item in container.attrs.get("Config", {}).get("Env") or [])
    idle: float | None = None
    with contextlib.suppress(ValueError):
        idle = float(env[IDLE_STOP_ENV]) if IDLE_STOP_ENV in env else None
    return thing.model_copy(update={
        "started_at": _parse_time(started) or thing.started_at, "idle_stop_s": idle,
    })


def _parse_time(text: str) -> datetime | None:
    """Docker's RFC 3339 time with nanoseconds, as an aware datetime."""
    head, _, rest = text.partition(".")
    try:
        return datetime.fromisoformat(head + ("Z" if rest else "")).astimezone(UTC)
    except ValueError:
        return None


def _current_label(docker: DockerConnection) -> str | None:
    with contextlib.suppress(Exception):  # no engine, or a root this container does not mount
        return docker.root_label
    return None


def files_of(docker: DockerConnection, label: str, current: bool) -> Path | None:
    """Where this process can read the files of the root ``label``: this command's root, a
    bind mount's path or a named volume's mount point when this process sees them (on the
    engine's host)."""
    if current:
        return docker.config.root
    kind, _, where = label.partition(":")
    path: Path | None = Path(where) if kind == "bind" else None
    if kind == "volume":
        with contextlib.suppress(Exception):  # gone, or not ours to inspect
            path = Path(docker.client.api.inspect_volume(where)["Mountpoint"])
    if path is not None and (path / "tasks").is_dir() and os.access(path, os.R_OK | os.X_OK):
        return path
    return None


def stop_hint(label: str, files: Path | None, things: list[RunningThing], backend: str) -> str:
    """How to stop all of a root's things: ``orchestrator cleanup`` where its files are seen,
    else ``docker rm -f`` by its label; and each Compose stack's ``stop``."""
    kind, _, where = label.partition(":")
    if files is not None:
        volume = ["--volume", where] if kind == "volume" else []
        hints = [cleanup_hint(files, backend, *volume)]
    else:
        hints = [f"docker rm -f $(docker ps -q --filter label={LABEL_ROOT}={label})"]
    projects = sorted({
        thing.service.split(" ", 1)[1].split("/")[0]
        for thing in things
        if thing.service and thing.service.startswith("compose ")
    })
    hints += [f"docker-compose -p {project} stop" for project in projects]
    return "; ".join(hints)


def running_roots(docker: DockerConnection, backend: str = "docker") -> list[EngineRoot]:
    """Every root with a running container on this engine, with what runs for it."""
    grouped: dict[str, list[RunningThing]] = {}
    for summary in docker.client.api.containers():
        label = root_of(summary)
        thing = thing_of(docker, summary) if label is not None else None
        if label is not None and thing is not None:
            grouped.setdefault(label, []).append(thing)
    current = _current_label(docker)
    roots = []
    for label, things in sorted(grouped.items()):
        files = files_of(docker, label, label == current)
        roots.append(EngineRoot(
            root=label, scope=root_scope(label), files=files, current=label == current,
            things=tuple(things), stop_hint=stop_hint(label, files, things, backend),
        ))
    return roots
