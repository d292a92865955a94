"""What a worker may be given beyond its sandbox, whoever asks: a person, or a manager agent
that read a prompt injection in a worker's output and now asks for the Docker socket.

Bind mounts are host paths (the engine resolves them on the host, whatever container the manager
runs in). Refused, in one sentence, for every mount of a task, a profile or ``--mount``, and for
a ``--volume`` given as a host path:

- the Docker socket, or any directory above it (``/run``, ``/var/run``, containerd's);
- ``/`` and the system directories (``/etc``, ``/usr``, ``/proc``, ``/var/lib``, ...), which hold
  every container's files and the engine's state;
- a home directory itself (``/root``, ``/home/NAME``) or anything above one, and credentials
  anywhere (``.ssh``, ``.aws``, ``.claude``, the token file, the manager's secrets);
- the orchestration volume or root itself, mounted anywhere else than the runtime's place;
- a target that would cover the runtime's own files in the worker (``/``, ``/runtime``,
  ``/orchestration``, the system directories, the venv).

A worker network is never an option (workers have none); a ``--network`` for the gateway must be
one that the person configured: ``$ORCHESTRATOR_NETWORK`` or a profile's ``network``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import PurePosixPath

from ..errors import ManagerError
from ..profiles import parse_bind_mount

SOCKET_DIRS = ("/run", "/var/run", "/run/containerd", "/var/run/containerd")
SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock")
SYSTEM_DIRS = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin",
    "/sys", "/usr", "/var/lib", "/var/log", "/var/run", "/run", "/snap",
)  # fmt: skip
HOME_PARENTS = ("/home", "/Users")
CREDENTIAL_NAMES = frozenset({
    ".ssh", ".aws", ".azure", ".gnupg", ".docker", ".kube", ".claude", ".claude.json",
    ".claude-token", ".netrc", ".git-credentials", ".pgpass", ".npmrc", ".pypirc", "gcloud",
    "claude-orchestrator-secrets",
})  # fmt: skip
CREDENTIAL_PREFIXES = ("orchestrator-secrets",)
PROTECTED_TARGETS = (
    "/", "/runtime", "/orchestration", "/opt/venv", "/opt/claude-orchestrator", "/bin", "/boot",
    "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr", "/run",
)  # fmt: skip
"""Worker paths a mount may not cover: the runtime's own and the system's."""


class MountRefused(ManagerError, PermissionError):
    """A worker mount, volume or network would give a worker more than its sandbox."""


def _normal(path: str) -> PurePosixPath:
    """``path`` with ``..`` and links resolved as far as this machine can see them."""
    return PurePosixPath(os.path.realpath(path) if os.path.exists(path) else os.path.normpath(path))


def _inside_or_above(path: PurePosixPath, other: str) -> bool:
    other_path = PurePosixPath(other)
    return path == other_path or path in other_path.parents or other_path in path.parents


def host_path_refusal(
    path: str, *, protected: Iterable[str] = (), docker_host: str | None = None
) -> str | None:
    """Why the host path ``path`` may not reach a worker, or None when it may; ``docker_host``
    is the engine's ``$DOCKER_HOST`` (its socket is refused too)."""
    sockets = (*SOCKETS, *_socket_of(docker_host))
    for raw in {path, str(_normal(path))}:
        candidate = PurePosixPath(os.path.normpath(raw))
        reason = _refusal_of(candidate, tuple(protected), sockets)
        if reason:
            return reason
    return None


def _refusal_of(
    path: PurePosixPath, protected: tuple[str, ...], sockets: tuple[str, ...]
) -> str | None:
    if path == PurePosixPath("/"):
        return "it is the host's root directory"
    for socket in sockets:
        if _inside_or_above(path, socket):
            return "it is or holds the Docker engine's socket (root on the host)"
    for system in SYSTEM_DIRS:
        if _inside_or_above(path, system):
            return f"it is or holds the system directory {system}"
    if path == PurePosixPath("/root") or any(
        path == PurePosixPath(parent) or path.parent == PurePosixPath(parent)
        for parent in HOME_PARENTS
    ):
        return "it is a home directory, or holds one"
    if any(
        part in CREDENTIAL_NAMES or part.startswith(CREDENTIAL_PREFIXES) for part in path.parts
    ):
        return "it holds credentials"
    for root in protected:
        if _inside_or_above(path, root):
            return "it is or holds the orchestration volume's own files"
    return None


def _socket_of(docker_host: str | None) -> tuple[str, ...]:
    host = docker_host or ""
    return (host.removeprefix("unix://"),) if host.startswith("unix://") else ()


def target_refusal(target: str) -> str | None:
    """Why a mount may not be placed at ``target`` in a worker, or None when it may."""
    normal = PurePosixPath(os.path.normpath(target))
    for protected in PROTECTED_TARGETS:
        root = PurePosixPath(protected)
        if normal == root or (protected != "/" and root in normal.parents):
            return f"it would cover the worker's {protected}"
    return None


def check_mount(
    spec: str,
    *,
    volume: str | None = None,
    protected: Iterable[str] = (),
    docker_host: str | None = None,
) -> None:
    """Raise :class:`MountRefused` unless ``spec`` is a mount a worker may have. ``volume`` is
    the orchestration volume's name (never mounted twice); ``protected`` the host paths of the
    orchestration root."""
    mount = parse_bind_mount(spec)
    if mount.is_host_path:
        reason = host_path_refusal(mount.source, protected=protected, docker_host=docker_host)
    elif volume and mount.source == volume:
        reason = "it is the orchestration volume (workers get it only at the runtime's place)"
    else:
        reason = None
    reason = reason or target_refusal(mount.target)
    if reason:
        raise MountRefused(
            f"The worker mount {spec} is refused: {reason}; give workers only project "
            "directories or caches (a person can change profiles.yaml, an agent cannot widen a "
            "worker)."
        )


def check_mounts(
    specs: Iterable[str],
    *,
    volume: str | None = None,
    protected: Iterable[str] = (),
    docker_host: str | None = None,
) -> None:
    """:func:`check_mount` for each of ``specs``."""
    protected = tuple(protected)
    for spec in specs:
        check_mount(spec, volume=volume, protected=protected, docker_host=docker_host)


def check_volume(volume: str, docker_host: str | None = None) -> None:
    """Raise :class:`MountRefused` when the orchestration volume, given as a host path, is one
    that no worker may see (``/``, a system or home directory, the Docker socket)."""
    if not volume.startswith("/"):
        return
    reason = host_path_refusal(volume, docker_host=docker_host)
    if reason:
        raise MountRefused(
            f"The volume {volume} is refused: {reason}; use a named volume or a directory "
            "made for the orchestration root."
        )


def check_network(network: str | None, allowed: Iterable[str]) -> None:
    """Raise :class:`MountRefused` unless ``network`` is None or one the person configured."""
    if network is None:
        return
    allowed = set(allowed)
    if network in ("host", "bridge", "default") or network.startswith("container:"):
        reason = "it is not a network of the project's"
    elif network not in allowed:
        reason = "no profile and no $ORCHESTRATOR_NETWORK names it"
    else:
        return
    names = ", ".join(sorted(allowed)) or "none"
    raise MountRefused(
        f"The network {network} is refused: {reason}; use one that the person configured "
        f"(configured: {names})."
    )
