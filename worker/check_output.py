"""Reading what a check's test runner reported: JUnit XML where it wrote one, else the summary
lines of pytest, unittest, cargo and go in its output.

Everything here reads text the repository's tests produced (the agent's code): sizes are
bounded, and nothing is trusted beyond being counted.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from orchestration_protocol.outcomes import (
    MAX_EXCERPT_CHARS,
    MAX_FAILING_TESTS,
    MAX_TEST_NAME_CHARS,
    CheckCounts,
)

MAX_LINE_CHARS = 2000
"""A longer output line is cut (one huge line must not push everything else out)."""

PYTEST_SUMMARY = re.compile(r"^=*\s*((?:\d+ [a-z]+(?:, )?)+) in [\d.]+s\b")
PYTEST_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)")
UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ")
UNITTEST_END = re.compile(r"^(OK|FAILED)(?: \((.*)\))?$")
UNITTEST_FAILED = re.compile(r"^(?:FAIL|ERROR): (\S+) \((\S+)\)")
CARGO_RESULT = re.compile(
    r"^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored;"
)
CARGO_FAILED = re.compile(r"^test (\S+) \.\.\. FAILED$")
GO_TEST = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+)")
GO_PACKAGE = re.compile(r"^(ok|FAIL|---)\s+\S+\s+(?:[\d.]+s|\(cached\)|\[)")
COMMAND_RUNNERS = (
    (re.compile(r"\bpytest\b|\bpy\.test\b"), "pytest"),
    (re.compile(r"-m unittest\b"), "unittest"),
    (re.compile(r"\bcargo test\b"), "cargo"),
    (re.compile(r"\bgo test\b"), "go"),
    (re.compile(r"\bnpm (?:run )?test\b"), "npm"),
    (re.compile(r"\bmake\b.*\btest\b"), "make"),
)


@dataclass
class Parsed:
    """Counts and failing tests found for one command."""

    runner: str | None = None
    """Which runner's report was recognized."""
    counts: CheckCounts = field(default_factory=CheckCounts)
    """Its counts."""
    failing: list[str] = field(default_factory=list)
    """Failing tests, in the order reported."""
    source: str | None = None
    """``junit`` or ``summary``; None when nothing was recognized."""


def add_name(names: list[str], name: str) -> None:
    """Append ``name`` (cut to ``MAX_TEST_NAME_CHARS``) unless present or the list is full."""
    name = name[:MAX_TEST_NAME_CHARS]
    if name not in names and len(names) < MAX_FAILING_TESTS:
        names.append(name)


def parse_junit(data: bytes) -> Parsed | None:
    """Counts and failing tests of a JUnit XML report; None when it is not one."""
    import xml.etree.ElementTree as ElementTree  # only a check with a JUnit report needs it

    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return None
    cases = list(root.iter("testcase"))
    if root.tag not in ("testsuites", "testsuite"):
        return None
    tally = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    for case in cases:
        name = ".".join(part for part in (case.get("classname"), case.get("name")) if part)
        if case.find("failure") is not None:
            tally["failed"] += 1
            add_name(failing, name)
        elif case.find("error") is not None:
            tally["errors"] += 1
            add_name(failing, name)
        elif case.find("skipped") is not None:
            tally["skipped"] += 1
        else:
            tally["passed"] += 1
    return Parsed(runner=None, counts=CheckCounts(**tally), failing=failing, source="junit")


class OutputScanner:
    """Fed the output line by line: keeps a bounded excerpt of its end, and the runners'
    summary lines and failing test names wherever they appear."""

    def __init__(self, limit: int = MAX_EXCERPT_CHARS) -> None:
        self.limit = limit
        self.lines: deque[str] = deque()
        self.kept_chars = 0
        self.total_chars = 0
        self.failing: list[str] = []
        self.runner: str | None = None
        self._pytest: dict[str, int] | None = None
        self._unittest_ran: int | None = None
        self._unittest_end: dict[str, int] | None = None
        self._cargo = [0, 0, 0]
        self._go = {"passed": 0, "failed": 0, "skipped": 0}

    def feed(self, line: str) -> None:
        """Take one line of output."""
        line = line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " [line cut]"
        self.total_chars += len(line) + 1
        self.lines.append(line)
        self.kept_chars += len(line) + 1
        while self.kept_chars > self.limit and len(self.lines) > 1:
            self.kept_chars -= len(self.lines.popleft()) + 1
        self._scan(line)

    @property
    def excerpt(self) -> str:
        """The end of the output, at most ``limit`` characters."""
        text = "\n".join(self.lines)
        return text[-self.limit :]

    @property
    def truncated(self) -> bool:
        """Whether earlier output was left out of the excerpt."""
        return self.total_chars > len(self.excerpt) + 1

    def _scan(self, line: str) -> None:
        if found := PYTEST_SUMMARY.match(line):
            self._pytest = _tally(found[1], ", ", " ", number_first=True)
            self.runner = "pytest"
        elif found := UNITTEST_RAN.match(line):
            self._unittest_ran = int(found[1])
        elif (found := UNITTEST_END.match(line)) and self._unittest_ran is not None:
            self._unittest_end = _tally(found[2] or "", ", ", "=", number_first=False)
            self.runner = "unittest"
        elif found := CARGO_RESULT.match(line):
            self._cargo = [a + int(b) for a, b in zip(self._cargo, found.groups(), strict=True)]
            self.runner = "cargo"
        else:
            self._scan_names(line)

    def _scan_names(self, line: str) -> None:
        if found := UNITTEST_FAILED.match(line):
            add_name(self.failing, f"{found[2]}")
        elif (found := PYTEST_FAILED.match(line)) or (found := CARGO_FAILED.match(line)):
            add_name(self.failing, found[1])
        elif found := GO_TEST.match(line):
            kind = {"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}[found[1]]
            self._go[kind] += 1
            if kind == "failed":
                add_name(self.failing, found[2])
        elif GO_PACKAGE.match(line) and self.runner is None:
            self.runner = "go"

    def result(self) -> Parsed:
        """What the output said."""
        counts = self._counts()
        return Parsed(
            runner=self.runner or ("go" if any(self._go.values()) else None),
            counts=counts or CheckCounts(),
            failing=list(self.failing),
            source="summary" if counts is not None else None,
        )

    def _counts(self) -> CheckCounts | None:
        if self._pytest is not None:
            tally = self._pytest
            return CheckCounts(
                passed=tally.get("passed", 0) + tally.get("xpassed", 0),
                failed=tally.get("failed", 0),
                errors=tally.get("error", 0) + tally.get("errors", 0),
                skipped=tally.get("skipped", 0) + tally.get("xfailed", 0) + tally.get("deselected", 0),
            )
        if self._unittest_ran is not None and self._unittest_end is not None:
            end = self._unittest_end
            failed, errors = end.get("failures", 0), end.get("errors", 0)
            skipped = end.get("skipped", 0) + end.get("expected failures", 0)
            passed = max(0, self._unittest_ran - failed - errors - skipped)
            return CheckCounts(passed=passed, failed=failed, errors=errors, skipped=skipped)
        if self.runner == "cargo":
            return CheckCounts(passed=self._cargo[0], failed=self._cargo[1], skipped=self._cargo[2])
        if any(self._go.values()):
            return CheckCounts(**self._go)
        return None


def _tally(text: str, between: str, within: str, *, number_first: bool) -> dict[str, int]:
    """``"3 failed, 1 passed"`` or ``"failures=1, errors=2"`` as a dict of counts."""
    tally: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(between))):
        first, _, second = part.partition(within)
        number, name = (first, second) if number_first else (second, first)
        if number.isdigit():
            tally[name.strip()] = int(number)
    return tally


def runner_of_command(command: str) -> str | None:
    """The runner a command names, e.g. ``pytest`` for ``python3 -m pytest -q``."""
    for pattern, name in COMMAND_RUNNERS:
        if pattern.search(command):
            return name
    return None
