"""Which commands check a repository, and where that came from.

In order, the first that says anything wins:

1. the task's ``check`` (``[]`` means: no check);
2. ``.orchestrator.yaml`` at the repository's root: ``check:`` one command or a list, and
   optionally ``check_timeout_s:``;
3. the profile's ``check``;
4. a default detected from the tree: ``make test`` (a Makefile with a ``test`` target),
   ``npm test`` (a ``package.json`` with a real ``test`` script), ``cargo test`` (``Cargo.toml``),
   ``go test ./...`` (``go.mod``), then Python tests (``test_*.py``, ``*_test.py``):
   ``python3 -m pytest`` where pytest is installed or configured, else ``python3 -m unittest``.

The tree is read through a :class:`TreeView` (a directory, or a commit of a git repository): the
worker reads the *base* commit, never the agent's work tree, so an agent cannot rewrite the check
that judges it. :func:`resolve_check` says where the check came from, for the plan and ``status``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .docstrings import describe_fields
from .errors import ProtocolError

REPOSITORY_CONFIG = ".orchestrator.yaml"
"""The repository's own orchestrator settings, at its root."""
MAX_CONFIG_BYTES = 64 * 1024
"""Largest ``.orchestrator.yaml`` read."""
DEFAULT_CHECK_TIMEOUT_S = 900.0
"""Time limit of a check when nothing sets one."""
NPM_PLACEHOLDER_TEST = "no test specified"
"""What ``npm init``'s placeholder ``test`` script prints: not a real test script."""
MAKE_TEST_TARGET = re.compile(r"^test\s*:(?!=)", re.M)
PYTHON_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
PYTEST_MARKERS = ("pytest.ini", "conftest.py", "tox.ini")


class CheckConfigInvalid(ProtocolError, ValueError):
    """A ``.orchestrator.yaml`` does not parse or holds a field of the wrong type."""


class RepositoryConfig(BaseModel):
    """The content of ``.orchestrator.yaml``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True)

    check: list[str] | None = None
    """The commands that check the repository (one string is one command)."""
    check_timeout_s: float | None = Field(default=None, gt=0)
    """Wall-clock limit for the whole check, in seconds."""

    @field_validator("check", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("check")
    @classmethod
    def _no_empty_command(cls, commands: list[str] | None) -> list[str] | None:
        if commands is not None and any(not command.strip() for command in commands):
            raise ValueError("holds an empty command")
        return commands


class ResolvedCheck(BaseModel):
    """The check that applies to a task, and where it came from."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True)

    commands: list[str]
    """The commands, in order; empty when the repository has no check."""
    source: str
    """Where they came from: ``task``, ``.orchestrator.yaml``, ``profile NAME``,
    ``detected: WHY``, or ``none: WHY``."""
    timeout_s: float = DEFAULT_CHECK_TIMEOUT_S
    """Wall-clock limit for the whole check, in seconds."""

    @property
    def describe(self) -> str:
        """One line for the plan and ``status``, e.g. ``make test (detected: Makefile test target)``."""
        if not self.commands:
            return f"no check ({self.source})"
        return f"{' && '.join(self.commands)} ({self.source})"


class TreeView(Protocol):
    """Read access to one state of a repository's files."""

    def paths(self) -> list[str]:
        """Every file's path, relative to the root, with ``/`` separators."""
        ...

    def read_text(self, path: str) -> str | None:
        """The file's text (at most ``MAX_CONFIG_BYTES`` are used), or None when absent."""
        ...


class DirectoryTree:
    """A directory on disk (only for trees the caller trusts: the worker reads commits)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def paths(self) -> list[str]:
        return [
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(self.root).parts
        ]

    def read_text(self, path: str) -> str | None:
        file = self.root / path
        if file.is_symlink() or not file.is_file():
            return None
        with file.open("rb") as handle:
            return handle.read(MAX_CONFIG_BYTES + 1).decode("utf-8", errors="replace")


class GitTree:
    """A commit of a git repository, read with the caller's own git invocation (the worker passes
    its runtime git, with hooks and the agent's config off)."""

    def __init__(self, run_git: Callable[[list[str]], str | None], revision: str) -> None:
        self.run_git, self.revision = run_git, revision

    def paths(self) -> list[str]:
        listing = self.run_git(["ls-tree", "-r", "-z", "--name-only", self.revision]) or ""
        return [path for path in listing.split("\0") if path]

    def read_text(self, path: str) -> str | None:
        text = self.run_git(["cat-file", "blob", f"{self.revision}:{path}"])
        return None if text is None else text[: MAX_CONFIG_BYTES + 1]


def git_runner(git_dir: Path, env: dict[str, str] | None = None) -> Callable[[list[str]], str | None]:
    """A plain ``run_git`` for :class:`GitTree` over a repository the caller trusts (the
    manager's mirror): stdout, or None when git fails."""

    def run(args: list[str]) -> str | None:
        completed = subprocess.run(
            ["git", "-c", "core.hooksPath=/dev/null", f"--git-dir={git_dir}", *args],
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            check=False,
        )
        return completed.stdout if completed.returncode == 0 else None

    return run


def read_repository_config(tree: TreeView, where: str = REPOSITORY_CONFIG) -> RepositoryConfig:
    """The repository's ``.orchestrator.yaml`` (an empty config when there is none);
    :class:`CheckConfigInvalid` names the file and the field when it is unusable."""
    text = tree.read_text(REPOSITORY_CONFIG)
    if text is None:
        return RepositoryConfig()
    if len(text) > MAX_CONFIG_BYTES:
        raise CheckConfigInvalid(
            f"{where} is over {MAX_CONFIG_BYTES // 1024} KiB; keep it to a few settings."
        )
    import yaml  # only a repository with a config file needs it (about 30 ms to import)

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise CheckConfigInvalid(
            f"{where} is not valid YAML{line}; fix it or remove it."
        ) from error
    if document is None:
        return RepositoryConfig()
    if not isinstance(document, dict):
        raise CheckConfigInvalid(f"{where} must be a mapping such as 'check: make test'.")
    try:
        return RepositoryConfig.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top)"
        raise CheckConfigInvalid(
            f"{where}: field {field!r} {_reason(first)}; 'check' is one command or a list of "
            "commands, 'check_timeout_s' a number of seconds."
        ) from error


def _reason(error: object) -> str:
    kind = error.get("type", "") if isinstance(error, dict) else ""
    if kind == "extra_forbidden":
        return "is not a known setting"
    message = str(error.get("msg", "is invalid")) if isinstance(error, dict) else "is invalid"
    return f"is wrong ({message[:1].lower()}{message[1:]})"


PytestInstalled = bool | Callable[[], bool]
"""Whether pytest runs in the check's environment, or how to find out (asked only when a detected
Python check needs the answer: finding out starts a Python)."""


def detect_check(tree: TreeView, *, pytest_installed: PytestInstalled) -> ResolvedCheck:
    """The default check for a tree without a configured one (``none: ...`` when nothing fits)."""
    paths = set(tree.paths())
    makefile = next((name for name in ("Makefile", "makefile", "GNUmakefile") if name in paths), None)
    if makefile and MAKE_TEST_TARGET.search(tree.read_text(makefile) or ""):
        return ResolvedCheck(commands=["make test"], source="detected: Makefile test target")
    if "package.json" in paths and _npm_has_tests(tree.read_text("package.json") or ""):
        return ResolvedCheck(commands=["npm test"], source="detected: package.json test script")
    if "Cargo.toml" in paths:
        return ResolvedCheck(commands=["cargo test"], source="detected: Cargo.toml")
    if "go.mod" in paths:
        return ResolvedCheck(commands=["go test ./..."], source="detected: go.mod")
    if any(PYTHON_TEST_FILE.search(path) for path in paths):
        return _python_check(tree, paths, pytest_installed)
    return ResolvedCheck(commands=[], source="none: no tests found and no check configured")


def _npm_has_tests(text: str) -> bool:
    try:
        scripts = json.loads(text).get("scripts") or {}
    except (ValueError, AttributeError):
        return False
    test = scripts.get("test") if isinstance(scripts, dict) else None
    return isinstance(test, str) and bool(test.strip()) and NPM_PLACEHOLDER_TEST not in test


def _python_check(
    tree: TreeView, paths: set[str], pytest_installed: PytestInstalled
) -> ResolvedCheck:
    configured = any(marker in paths for marker in PYTEST_MARKERS) or (
        "pyproject.toml" in paths and "[tool.pytest" in (tree.read_text("pyproject.toml") or "")
    )
    if pytest_installed() if callable(pytest_installed) else pytest_installed:
        return ResolvedCheck(commands=["python3 -m pytest"], source="detected: Python tests, pytest installed")
    if configured:
        return ResolvedCheck(
            commands=["python3 -m pytest"],
            source="detected: pytest configuration (pytest is not installed in this image)",
        )
    return ResolvedCheck(
        commands=["python3 -m unittest"], source="detected: Python tests, no pytest installed"
    )


def resolve_check(
    tree: TreeView,
    *,
    task_check: Sequence[str] | None = None,
    task_timeout_s: float | None = None,
    profile: tuple[str, Sequence[str] | None] | None = None,
    pytest_installed: PytestInstalled = False,
    where: str = REPOSITORY_CONFIG,
) -> ResolvedCheck:
    """The check for a task: the task's, the repository's ``.orchestrator.yaml``, the profile's
    (``profile`` is its name and check), else detected. ``where`` names the config file in
    errors (e.g. ``.orchestrator.yaml of orchestrator/t1``)."""
    config = read_repository_config(tree, where)
    timeout = task_timeout_s or config.check_timeout_s or DEFAULT_CHECK_TIMEOUT_S
    if task_check is not None:
        return ResolvedCheck(commands=list(task_check), source="task", timeout_s=timeout)
    if config.check is not None:
        return ResolvedCheck(commands=config.check, source=REPOSITORY_CONFIG, timeout_s=timeout)
    if profile is not None and profile[1] is not None:
        return ResolvedCheck(
            commands=list(profile[1]), source=f"profile {profile[0]}", timeout_s=timeout
        )
    detected = detect_check(tree, pytest_installed=pytest_installed)
    return detected.model_copy(update={"timeout_s": timeout})
