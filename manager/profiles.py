"""Worker profiles: a name mapped to an image and its defaults (resources, env, agent, mounts).

Built-ins: ``default`` -> ``claude-worker`` and ``flutter`` -> ``claude-flutter``. A YAML (or
JSON) file maps more names, or overrides these, e.g.::

    flutter:
      image: claude-worker      # use the generic image for flutter tasks
      memory: 8g
      env: {FLUTTER_CHANNEL: stable}

The file is the first that exists of: the ``--profiles`` option, ``$ORCHESTRATOR_PROFILES``,
``<root>/profiles.yaml``, ``~/.config/claude-orchestrator/profiles.yaml``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestration_protocol import AgentKind
from orchestration_protocol.docstrings import describe_fields
from orchestration_protocol.gateway import DOMAIN_PATTERN
from orchestration_protocol.models import refuse_secret_names

from .errors import ProfilesInvalid, UnknownProfile

PROFILES_ENV = "ORCHESTRATOR_PROFILES"
WORKER_UID = 1000
"""The uid agents run as by default (a profile's ``user``); never root."""
WORKER_IMAGE_ENV = "ORCHESTRATOR_WORKER_IMAGE"
"""Names the generic worker image (default ``claude-worker``): the default profile's, the
gateway's and the scripted model's; run.sh passes it on to the manager."""
USER_PROFILES = Path("~/.config/claude-orchestrator/profiles.yaml")
DEFAULT_PROFILE = "default"
MOUNT_PATTERN = re.compile(r"^[^:]+:/[^:]*(:(ro|rw))?$")


@dataclass(frozen=True)
class BindMount:
    """One ``HOST:CONTAINER[:ro|rw]`` mount, parsed."""

    source: str
    """A host path (absolute) or a named volume."""
    target: str
    """Where the worker sees it (absolute)."""
    mode: str = "rw"
    """``ro`` or ``rw``."""

    @property
    def is_host_path(self) -> bool:
        return self.source.startswith("/")


def parse_bind_mount(spec: str) -> BindMount:
    """``HOST:CONTAINER[:ro|rw]`` as a :class:`BindMount` (profiles validate the shape)."""
    source, _, rest = spec.partition(":")
    target, _, mode = rest.partition(":")
    return BindMount(source, target, mode or "rw")


class Profile(BaseModel):
    """How to run the workers of one kind of task."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """The profile's name, as given to ``spawn PROFILE`` and ``task create --profile``."""
    image: str = Field(default_factory=lambda: worker_image())
    """The worker image (built locally; never pulled); the generic worker image by default."""
    memory: str | None = "4g"
    """Memory limit, Docker syntax (``512m``, ``4g``); None for no limit."""
    cpus: float | None = Field(default=2.0, gt=0)
    """CPU limit in cores; None for no limit."""
    pids_limit: int | None = Field(default=1024, gt=0)
    """Most processes the worker may run at once; None for no limit."""
    user: str = "1000:1000"
    """User (uid[:gid]) the agent runs as; never root (the worker's runtime starts as root with
    a few capabilities to switch to it)."""
    network: str | None = None
    """Docker network the gateway joins for this profile, where its allowed hosts live (workers
    themselves have no network); None for none."""
    egress_allow: list[str] = Field(default_factory=list)
    """Host names this profile's agents may reach through the gateway's egress proxy:
    ``host`` exactly or ``*.domain``; empty (the default) denies every outbound connection."""
    env: dict[str, str] = Field(default_factory=dict)
    """Non-secret environment for the worker."""
    agent: AgentKind | None = None
    """Agent for tasks created with this profile when none is given."""
    model: str | None = None
    """Model for tasks created with this profile when none is given."""
    mounts: list[str] = Field(default_factory=list)
    """Extra bind mounts ``HOST:CONTAINER[:ro|rw]`` (caches, a local repository)."""
    check: list[str] | None = Field(default=None, max_length=20)
    """Commands that check this profile's tasks' work, when neither the task nor the
    repository's ``.orchestrator.yaml`` says; None: a default detected from the tree."""

    @field_validator("check", mode="before")
    @classmethod
    def _check_is_commands(cls, check: object) -> object:
        if isinstance(check, str):
            return [check]  # one command, as in .orchestrator.yaml
        if isinstance(check, list) and any(not str(command).strip() for command in check):
            raise ValueError("check holds an empty command; remove it or write the command")
        return check
    placement: list[str] = Field(default_factory=list)
    """Swarm placement constraints for this profile's workers (``node.labels.gpu==true``,
    ``node.role==worker``); empty: any node. Other engines ignore them."""

    @field_validator("env")
    @classmethod
    def _env_is_not_secret(cls, env: dict[str, str]) -> dict[str, str]:
        return refuse_secret_names(
            env, "profiles", "give credentials to the manager's environment or secrets dir instead"
        )

    @field_validator("egress_allow")
    @classmethod
    def _hosts_are_names(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not DOMAIN_PATTERN.fullmatch(host):
                raise ValueError(f"egress_allow entry {host!r} is not a host name or *.domain")
        return hosts

    @field_validator("mounts")
    @classmethod
    def _mounts_are_binds(cls, mounts: list[str]) -> list[str]:
        for mount in mounts:
            if not MOUNT_PATTERN.fullmatch(mount):
                raise ValueError(f"mount {mount!r} is not HOST:/CONTAINER[:ro|rw]")
        return mounts

    @field_validator("user")
    @classmethod
    def _not_root(cls, user: str) -> str:
        if user.split(":")[0] in ("0", "root"):
            raise ValueError("workers never run as root; use a uid such as 1000")
        return user


def worker_image() -> str:
    """The generic worker image: ``$ORCHESTRATOR_WORKER_IMAGE``, else ``claude-worker``."""
    return os.environ.get(WORKER_IMAGE_ENV) or "claude-worker"


def builtin_profiles() -> dict[str, Profile]:
    """``default`` (the generic worker image) and ``flutter`` (``claude-flutter``)."""
    return {
        "default": Profile(name="default", image=worker_image()),
        "flutter": Profile(name="flutter", image="claude-flutter", memory="8g"),
    }


def profiles_file(root: Path | None, explicit: Path | None = None) -> Path | None:
    """The profiles file in effect: the first that exists of the places in the module doc."""
    if explicit is not None:
        return explicit
    candidates = []
    if root is not None:
        candidates.append(root / "profiles.yaml")
    candidates.append(USER_PROFILES.expanduser())
    return next((path for path in candidates if path.is_file()), None)


def _parse_profiles(path: Path) -> dict[str, Profile]:
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError as error:
        raise ProfilesInvalid(
            f"The profiles file {path} does not exist; create it, or point --profiles "
            f"(or {PROFILES_ENV}) at one that does."
        ) from error
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0]
        raise ProfilesInvalid(
            f"The profiles file {path} cannot be read ({reason}); fix its YAML."
        ) from error
    if document is None:
        return {}
    if isinstance(document, dict) and isinstance(document.get("profiles"), dict):
        document = document["profiles"]
    if not isinstance(document, dict):
        raise ProfilesInvalid(f"The profiles file {path} must map profile names to settings.")
    profiles = {}
    for name, settings in document.items():
        if not isinstance(settings, dict):
            raise ProfilesInvalid(f"Profile {name!r} in {path} must be a mapping of settings.")
        try:
            profiles[str(name)] = Profile.model_validate({"name": str(name), **settings})
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            message = "unknown setting" if first["type"] == "extra_forbidden" else first["msg"]
            raise ProfilesInvalid(
                f"Profile {name!r} in {path}: {where}: {message}; fix the profiles file."
            ) from error
    return profiles


def load_profiles(root: Path | None = None, explicit: Path | None = None) -> dict[str, Profile]:
    """Built-in profiles, overridden and extended by the profiles file in effect."""
    profiles = builtin_profiles()
    path = profiles_file(root, explicit)
    if path is not None:
        profiles.update(_parse_profiles(path))
    return profiles


def resolve_profile(
    name: str | None, root: Path | None = None, explicit: Path | None = None
) -> Profile:
    """The profile called ``name`` (``default`` for None); UnknownProfile naming the choices."""
    profiles = load_profiles(root, explicit)
    name = name or DEFAULT_PROFILE
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles))
        where = profiles_file(root, explicit) or USER_PROFILES
        raise UnknownProfile(
            f"Unknown profile {name!r} (known: {known}); add it to {where} or pick a known one."
        ) from None
