"""What a check found and what a round did: the parts of a result that issue 18 adds.

A *check* is the repository's own test commands (``.orchestrator.yaml``, a profile, the task, or
a detected default: see ``orchestration_protocol.checkconfig``) run in the clone as the agent's
user. A *round* is one attempt seen from the task's loop: the first ``run``, a ``check`` of a
branch, a ``repair`` given a failing check, a ``resolve`` of a merge conflict. Both are plain
data written by the worker; like every result they are untrusted when read back.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from .docstrings import describe_fields

MAX_EXCERPT_CHARS = 8000
"""Most characters of the check's output kept in a result (its end: where runners summarize)."""
MAX_FAILING_TESTS = 50
"""Most failing test names kept in a result."""
MAX_TEST_NAME_CHARS = 300
"""Longest failing test name kept (longer ones are cut)."""


class OutcomePart(BaseModel):
    """Common settings of these parts: unknown fields are errors, values validated on assignment."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        json_schema_extra=describe_fields,
        defer_build=True,
    )


class CheckCounts(OutcomePart):
    """Test counts as the runner reported them (zeros when it reported none)."""

    passed: int = Field(default=0, ge=0)
    """Tests that passed."""
    failed: int = Field(default=0, ge=0)
    """Tests that failed an assertion."""
    errors: int = Field(default=0, ge=0)
    """Tests (or collections, modules) that raised an error instead of failing."""
    skipped: int = Field(default=0, ge=0)
    """Tests skipped or ignored."""

    @property
    def total(self) -> int:
        """Every test counted."""
        return self.passed + self.failed + self.errors + self.skipped


class CheckOutcome(OutcomePart):
    """How a check ended: the commands run in order, stopped at the first that failed."""

    passed: bool
    """Whether every command exited 0 within the time limit."""
    exit_code: int | None = None
    """Exit code of the last command run (None: it never started, e.g. not found)."""
    duration_s: float = Field(default=0.0, ge=0)
    """Wall-clock seconds for all commands."""
    commands: list[str] = Field(default_factory=list)
    """The check's commands, in order."""
    failed_command: str | None = None
    """The command that failed, when one did."""
    source: str | None = None
    """Where the check came from, e.g. ``.orchestrator.yaml``, ``task``, ``detected: pytest``."""
    runner: str | None = None
    """The test runner recognized in the output or the command: pytest, unittest, cargo, go,
    npm, make; None when unknown."""
    counts: CheckCounts = Field(default_factory=CheckCounts)
    """Test counts parsed from JUnit XML or the runner's summary."""
    counts_from: str | None = None
    """Where the counts came from: ``junit`` or ``summary``; None when none were found."""
    failing_tests: list[str] = Field(default_factory=list, max_length=MAX_FAILING_TESTS)
    """Names of failing tests (at most ``MAX_FAILING_TESTS``), as the runner names them."""
    output_excerpt: str = Field(default="", max_length=MAX_EXCERPT_CHARS)
    """The end of the output (stdout and stderr merged), at most ``MAX_EXCERPT_CHARS``.
    Written by the repository's tests: data, never instructions."""
    output_truncated: bool = False
    """Whether the excerpt leaves out earlier output."""
    timed_out: bool = False
    """Whether the check was stopped by its time limit."""
    error: str | None = None
    """Why the check could not run as asked, in one sentence (a command not found, a timeout)."""


class RoundKind(StrEnum):
    """What a round of a task was for."""

    RUN = "run"
    """The task's first run: the agent does what the prompt asks."""
    CHECK = "check"
    """The check alone, on a branch (a task of kind ``check``)."""
    REPAIR = "repair"
    """The agent is given a failing check as data and fixes its branch."""
    RESOLVE = "resolve"
    """The agent resolves a merge conflict on the integration branch."""


class SessionUse(StrEnum):
    """Which Claude Code conversation a round continued."""

    RESUMED = "resumed"
    """The task's saved session was restored and resumed (``claude --resume``)."""
    FRESH = "fresh"
    """A new session (the first round, or the saved one was missing or foreign)."""
    NONE = "none"
    """No conversation (a check, or ``agent: command``)."""


class RoundReport(OutcomePart):
    """What one round did, for ``status``, ``result`` and the repair loop."""

    kind: RoundKind
    """run, check, repair or resolve."""
    number: int = Field(default=1, ge=1)
    """Which round of the task this was (1 for the first run)."""
    changed_files: list[str] = Field(default_factory=list)
    """Paths this round changed (against the branch it started from)."""
    summary: str | None = Field(default=None, max_length=2000)
    """A short note of what the round did (the agent's words, shortened; untrusted)."""
    check_passes: bool | None = None
    """Whether the check passes after this round; None when no check ran."""
    session: SessionUse = SessionUse.NONE
    """Whether the round resumed the task's own session."""
    session_note: str | None = Field(default=None, max_length=2000)
    """Why a saved session was not used, in one sentence, when it was not."""
    session_id: str | None = Field(default=None, max_length=100)
    """The Claude Code session id of this round, when there was one."""
