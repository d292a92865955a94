"""The Docker engine as the manager meets it: reaching it (and saying in one sentence why it
cannot be reached), finding the volume workers must mount, building the secrets archive.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import socket
import tarfile
import time
from pathlib import Path
from typing import Any

from ...errors import (
    DockerUnavailable,
    VolumeNotWritable,
)

SECRETS_DIRNAME = "orchestrator-secrets"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
BUILD_HINTS = {
    "claude-worker": "scripts/build-images.sh --offline",
    "claude-orchestrator": "scripts/build-images.sh --offline",
}


def describe_docker_failure(error: BaseException, docker_host: str | None = None) -> str:
    """One sentence saying why the engine at ``docker_host`` (``$DOCKER_HOST``; None for the
    default socket) cannot be reached and what to do."""
    host = docker_host or DEFAULT_SOCKET
    text = f"{error!r} {error.__cause__!r} {error.__context__!r}"
    if "Permission denied" in text or "PermissionError" in text:
        return (
            f"Permission denied on the Docker socket ({host}); add your user to the 'docker' "
            "group and log in again, or run as root."
        )
    if "FileNotFoundError" in text or "No such file" in text:
        if docker_host:
            return (
                f"No Docker engine listens at DOCKER_HOST={host}; start the engine there, "
                "or fix or unset DOCKER_HOST."
            )
        if shutil.which("dockerd") or shutil.which("docker"):
            return (
                f"The Docker engine is not running (no socket at {host}); start it with "
                "'systemctl start docker' (or 'dockerd &')."
            )
        return (
            "Docker is not installed (no engine, no socket at /var/run/docker.sock); install it "
            "(Debian: apt-get install docker.io) and start it."
        )
    if "Connection refused" in text:
        return (
            f"The Docker engine at {host} refuses connections; start it ('systemctl start "
            "docker' or 'dockerd &') or fix DOCKER_HOST."
        )
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"The Docker engine at {host} cannot be reached ({first}); start it or fix DOCKER_HOST."


def probe_unix_socket(host: str, docker_host: str | None = None) -> None:
    """Connect to a unix-socket engine once ourselves (docker-py leaks the socket of a failed
    connect); DockerUnavailable with the sentence for what went wrong."""
    if not host.startswith("unix://"):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(5)
    try:
        probe.connect(host.removeprefix("unix://"))
    except OSError as error:
        raise DockerUnavailable(describe_docker_failure(error, docker_host)) from error
    finally:
        probe.close()


def connect_docker(docker_host: str | None = None, timeout_s: float = 30) -> Any:
    """A live docker-py client for ``docker_host`` (``$DOCKER_HOST``, which docker-py reads
    itself; None for the default socket), or DockerUnavailable with one sentence and the fix."""
    probe_unix_socket(docker_host or DEFAULT_SOCKET, docker_host)
    try:
        import docker

        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except Exception as error:  # docker-py wraps engine trouble in many exception types
        raise DockerUnavailable(describe_docker_failure(error, docker_host)) from error
    return client


def build_hint(image: str, profile: str | None = None) -> str:
    """The command that builds ``image``."""
    if image in BUILD_HINTS:
        return BUILD_HINTS[image]
    if image.startswith("claude-"):
        return f"scripts/build-images.sh --profile {image.removeprefix('claude-')}"
    return f"docker build -t {image} <context>"


def secrets_archive(secrets: dict[str, str], user: str) -> bytes:
    """A tar holding ``orchestrator-secrets/<NAME>`` files, mode 0400, owned by ``user``."""
    uid, _, gid = user.partition(":")
    owner = {"uid": int(uid), "gid": int(gid or uid)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        directory = tarfile.TarInfo(SECRETS_DIRNAME)
        directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o500, time.time()
        directory.uid, directory.gid = owner["uid"], owner["gid"]
        archive.addfile(directory)
        for name, value in secrets.items():
            data = value.encode()
            info = tarfile.TarInfo(f"{SECRETS_DIRNAME}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o400, time.time()
            info.uid, info.gid = owner["uid"], owner["gid"]
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


CONTAINER_ID = re.compile(r"(?:/containers/|docker[-/])([0-9a-f]{64})")


def own_container_ids() -> list[str]:
    """Ids this process's container may have: its hostname (Docker's default), then the ids in
    its mount table and cgroups (right even when ``--hostname`` was given)."""
    ids = [socket.gethostname()]
    with contextlib.suppress(OSError):  # only the files Docker binds into its own container:
        # a host's table also lists the mounts of the containers of every engine on it
        own = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
               if line.split(" ")[4:5] in (["/etc/hostname"], ["/etc/hosts"], ["/etc/resolv.conf"])]
        ids += CONTAINER_ID.findall("\n".join(own))
    with contextlib.suppress(OSError):
        ids += CONTAINER_ID.findall(Path("/proc/self/cgroup").read_text())
    return list(dict.fromkeys(ids))


def _own_container(client: Any) -> Any:
    from docker.errors import APIError, NotFound

    for candidate in own_container_ids():
        with contextlib.suppress(NotFound, APIError):
            return client.containers.get(candidate)
    return None


def find_volume(client: Any, root: Path) -> str:
    """What to mount in workers so they see ``root``: the mount that holds it in this process's
    own container (a named volume, or a bind mount's host path), else the path itself (this
    process runs on the engine's host)."""
    me = _own_container(client)
    if me is None:
        return str(root.resolve())
    root = root.resolve()
    mounts = sorted(me.attrs.get("Mounts", []), key=lambda m: len(m.get("Destination", "")))
    for mount in reversed(mounts):
        destination = Path(mount.get("Destination", "/nonexistent"))
        if root != destination and destination not in root.parents:
            continue
        if mount.get("Type") == "bind":
            return str(Path(mount["Source"]) / root.relative_to(destination))
        if root == destination and mount.get("Name"):
            return str(mount["Name"])
        raise VolumeNotWritable(
            f"The orchestration root {root} is inside the volume {mount.get('Name')} at "
            f"{destination}, not its top; use --root {destination}, or name the volume with "
            "--volume."
        )
    raise VolumeNotWritable(
        f"The orchestration root {root} is not on a volume of this container, so workers cannot "
        f"see it; mount orchestration-volume at {root} (docker run -v orchestration-volume:{root})."
    )
