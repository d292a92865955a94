"""Which check a task gets (the task's, the repository's ``.orchestrator.yaml``, the profile's,
or a default detected from the tree), read from the commit the task starts from in the volume's
mirror: what ``plan``, ``status`` and ``task show`` state. The worker resolves it again itself."""

from __future__ import annotations

from orchestration_protocol import Layout, Task, TaskKind
from orchestration_protocol.checkconfig import (
    CheckConfigInvalid,
    GitTree,
    ResolvedCheck,
    git_runner,
    resolve_check,
)
from orchestration_protocol.mirrors import mirror_dir

from ..config import ManagerSettings
from ..errors import ManagerError
from ..profiles import resolve_profile
from .mirror import is_mirror


def profile_check(settings: ManagerSettings, name: str | None) -> tuple[str, list[str] | None] | None:
    """The profile's name and its ``check`` (None when the profile is unknown here)."""
    try:
        profile = resolve_profile(name, settings.root, settings.profiles_path)
    except (ManagerError, ValueError, OSError):
        return None
    commands = getattr(profile, "check", None)
    return profile.name, list(commands) if commands is not None else None


def applicable_check(settings: ManagerSettings, task: Task) -> ResolvedCheck | str:
    """The check ``task`` gets; a sentence instead when it cannot be known yet (its repository
    is not mirrored) or the repository's ``.orchestrator.yaml`` is unusable."""
    layout: Layout = settings.layout
    url = task.repo or settings.repo_url
    mirror = mirror_dir(layout, url) if url else None
    if mirror is None or not is_mirror(mirror):
        return "not known yet (the repository is not mirrored in the volume)"
    branch = task.branch or settings.repo_branch
    revision = f"refs/heads/{branch}" if branch else "HEAD"
    if task.kind == TaskKind.PLAN:
        return "none (a planning task)"
    try:
        return resolve_check(
            GitTree(git_runner(mirror), revision),
            task_check=task.check,
            task_timeout_s=task.check_timeout_s,
            profile=profile_check(settings, task.profile),
            where=f".orchestrator.yaml of {branch or 'HEAD'}",
        )
    except CheckConfigInvalid as error:
        return str(error)


def describe_applicable(found: ResolvedCheck | str) -> str:
    """One line for people."""
    return found.describe if isinstance(found, ResolvedCheck) else found
