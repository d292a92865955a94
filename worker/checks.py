"""Running a task's check in its clone, as the agent's user, and reporting a CheckOutcome.

The check is the repository's code, as untrusted as the agent: it runs the way the agent runs
(``process.run_supervised`` with the agent's uid, no supplementary groups, its process group
stopped on a timeout or a cancel, every process of the uid reaped after it in a container),
with the agent's environment minus the model's credential (:func:`check_environment`). Its
output is kept as a bounded excerpt; pytest is asked for JUnit XML (``PYTEST_ADDOPTS``) in a
scratch directory outside the work tree, read back without following links.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from orchestration_protocol.checkconfig import (
    GitTree,
    PytestInstalled,
    ResolvedCheck,
    resolve_check,
)
from orchestration_protocol.outcomes import CheckCounts, CheckOutcome

from . import repo
from .check_output import OutputScanner, Parsed, add_name, parse_junit, runner_of_command
from .errors import GitFailed
from .process import run_supervised

MAX_JUNIT_BYTES = 8 * 1024 * 1024
"""Largest JUnit XML report read."""
NOT_FOUND_EXIT = 127
"""What the shell exits with when a command is not found."""
NOT_FOUND = re.compile(r"(?:^|: )([^\s:]+): (?:command )?not found\s*$")
MODEL_ACCESS_PREFIXES = ("ANTHROPIC_", "CLAUDE_CODE_SKIP_", "AWS_", "CLOUD_ML_")
"""Variables of the agent's environment a check never gets (the model's credential and route)."""


def check_environment(agent_env: Mapping[str, str]) -> dict[str, str]:
    """The check's environment: the agent's, without the model's credential or route, with
    ``CI=1`` (runners then neither prompt nor colour)."""
    env = {k: v for k, v in agent_env.items() if not k.startswith(MODEL_ACCESS_PREFIXES)}
    env.update(CI="1", NO_COLOR="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def pytest_installed(env: Mapping[str, str]) -> bool:
    """Whether ``python3 -m pytest`` works with the check's environment (decides the detected
    Python check: pytest, else unittest)."""
    if shutil.which("python3", path=env.get("PATH")) is None:
        return False
    probe = subprocess.run(
        ["python3", "-c", "import pytest"], env=dict(env), capture_output=True, check=False
    )
    return probe.returncode == 0


def make_scratch(workspace: repo.Workspace, owner: tuple[int, int] | None) -> Path:
    """A fresh, empty directory for the check's reports beside the work tree (not in it), owned
    by the agent's user."""
    scratch = workspace.agent_root / "check"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    if owner is not None:
        os.chown(scratch, *owner)
    return scratch


def resolve_for_workspace(
    workspace: repo.Workspace,
    revision: str,
    *,
    task_check: list[str] | None,
    task_timeout_s: float | None,
    profile: tuple[str, list[str] | None] | None = None,
    pytest_installed: PytestInstalled = False,
) -> ResolvedCheck:
    """The task's check, read from ``revision`` (the base commit: never the agent's tree) of the
    runtime's private repository with the runtime's git."""
    env = workspace.env(work_tree=False)

    def run_git(args: list[str]) -> str | None:
        try:
            return repo.git(args, env)
        except GitFailed:
            return None

    return resolve_check(
        GitTree(run_git, revision),
        task_check=task_check,
        task_timeout_s=task_timeout_s,
        profile=profile,
        pytest_installed=pytest_installed,
        where=f".orchestrator.yaml of commit {revision[:12]}",
    )


def run_check(
    check: ResolvedCheck,
    *,
    cwd: Path,
    env: Mapping[str, str],
    scratch: Path,
    user: tuple[int, int] | None = None,
    should_stop: Callable[[], str | None] = lambda: None,
    on_line: Callable[[str], None] = lambda line: None,
    reap_user: bool = False,
) -> CheckOutcome:
    """Run the check's commands in ``cwd`` in order, stopping at the first that fails or at the
    time limit; ``scratch`` is an empty directory the agent's user may write, outside the tree."""
    started = time.monotonic()
    deadline = started + check.timeout_s
    scanner = OutputScanner()

    def stop() -> str | None:
        if time.monotonic() > deadline:
            return f"timed out after {check.timeout_s:g}s"
        return should_stop()

    def feed(line: str) -> None:
        scanner.feed(line)
        on_line(line)

    exit_code: int | None = 0
    failed_command, stopped, reports = None, None, []
    for index, command in enumerate(check.commands):
        junit = scratch / f"junit-{index}.xml"
        outcome = run_supervised(
            ["/bin/sh", "-c", command], cwd=cwd, env={**env, "PYTEST_ADDOPTS": _addopts(env, junit)},
            on_line=feed, should_stop=stop, user=user, reap_user=reap_user,
        )
        exit_code, stopped = outcome.exit_code, outcome.stopped_because
        reports.append(read_junit(junit, user))
        if exit_code != 0 or stopped:
            failed_command = command
            break
    return _outcome(check, scanner, reports, exit_code, failed_command, stopped, started)


def _outcome(
    check: ResolvedCheck,
    scanner: OutputScanner,
    reports: list[Parsed | None],
    exit_code: int | None,
    failed_command: str | None,
    stopped: str | None,
    started: float,
) -> CheckOutcome:
    parsed = _merge(scanner.result(), reports, check)
    return CheckOutcome(
        passed=failed_command is None,
        exit_code=exit_code,
        duration_s=round(time.monotonic() - started, 3),
        commands=list(check.commands),
        failed_command=failed_command,
        source=check.source,
        runner=parsed.runner,
        counts=parsed.counts,
        counts_from=parsed.source,
        failing_tests=parsed.failing,
        output_excerpt=scanner.excerpt,
        output_truncated=scanner.truncated,
        timed_out=bool(stopped and stopped.startswith("timed out")),
        error=_problem(failed_command, exit_code, stopped, scanner),
    )


def _addopts(env: Mapping[str, str], junit: Path) -> str:
    return " ".join(filter(None, [env.get("PYTEST_ADDOPTS", ""), f"--junitxml={junit}"]))


def _problem(
    command: str | None, exit_code: int | None, stopped: str | None, scanner: OutputScanner
) -> str | None:
    if command is None:
        return None
    if stopped:
        return f"the check {command!r} was stopped: {stopped}"
    if exit_code == NOT_FOUND_EXIT:
        for line in reversed(scanner.lines):
            if found := NOT_FOUND.search(line):
                return (
                    f"check command {found[1]!r} was not found in the worker image; install it "
                    "in the profile's image or set another check in .orchestrator.yaml."
                )
    return None


def read_junit(path: Path, user: tuple[int, int] | None) -> Parsed | None:
    """The JUnit report at ``path``, when it is a regular file (not a link, a single name, owned
    by ``user`` when one is given) of at most ``MAX_JUNIT_BYTES``; else None."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return None
        if user is not None and info.st_uid != user[0]:
            return None
        data = handle.read(MAX_JUNIT_BYTES + 1)
    return parse_junit(data) if len(data) <= MAX_JUNIT_BYTES else None


def _merge(summary: Parsed, reports: list[Parsed | None], check: ResolvedCheck) -> Parsed:
    """JUnit counts where reports were written (summed), else the output's summary."""
    found = [report for report in reports if report is not None]
    runner = summary.runner or next(
        (name for name in map(runner_of_command, check.commands) if name), None
    )
    if not found:
        return Parsed(runner, summary.counts, summary.failing, summary.source)
    tally = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    for report in found:
        for key in tally:
            tally[key] += getattr(report.counts, key)
        for name in report.failing:
            add_name(failing, name)
    return Parsed(runner or "pytest", CheckCounts(**tally), failing, "junit")
