"""The queue's order: a task's ``priority`` and the priorities file a person edits.

``<root>/priorities.csv`` reorders a running queue without rewriting a task file (task files are
never rewritten). One rule a line, ``task id or glob, priority``::

    # the release first, the docs last
    release-*, 10
    docs-*, -5
    hotfix-login, 100

Blank lines and ``#`` comments are allowed, and so is a header line ``task,priority``. An exact
id beats a glob; among rules of one kind the later line wins (append a line to override). A
task no rule names keeps the ``priority`` of its file (0 when it has none). Higher runs first; ties go to
the older task (``created_at``), then to the id. A bad line is skipped and reported (its number
and one sentence), the others still apply.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from .models import PRIORITY_LIMIT, Task

PRIORITIES_FILE = "priorities.csv"
GLOB_PATTERN = re.compile(r"^[A-Za-z0-9._*?\[\]!-]{1,64}$")
HEADER = ("task", "priority")
NEVER = datetime.max.replace(tzinfo=UTC)

T = TypeVar("T")


@dataclass(frozen=True)
class PriorityRule:
    """One good line: the tasks it names and the priority it gives them."""

    pattern: str
    priority: int
    line: int

    @property
    def is_glob(self) -> bool:
        return any(char in self.pattern for char in "*?[")

    def matches(self, task_id: str) -> bool:
        if self.is_glob:
            return fnmatch.fnmatchcase(task_id, self.pattern)
        return task_id == self.pattern


@dataclass(frozen=True)
class BadPriorityLine:
    """A line of the priorities file that was skipped, and why."""

    line: int
    text: str
    reason: str

    @property
    def message(self) -> str:
        return f"{PRIORITIES_FILE} line {self.line}: {self.reason}"


@dataclass(frozen=True)
class Priorities:
    """The priorities file as read: its good rules and its bad lines."""

    rules: tuple[PriorityRule, ...] = ()
    problems: tuple[BadPriorityLine, ...] = field(default=())
    path: Path | None = None
    """The file read (None: parsed from text)."""

    def priority_of(self, task: Task) -> int:
        """The rule's priority for ``task`` (an exact id first, the later line first), else the
        task file's own."""
        for exact in (True, False):
            for rule in reversed(self.rules):
                if rule.is_glob != exact and rule.matches(task.id):
                    return rule.priority
        return task.priority or 0


def _parse_line(number: int, text: str) -> PriorityRule | BadPriorityLine | None:
    content = text.split("#", 1)[0].strip()
    if not content:
        return None
    fields = [part.strip() for part in content.split(",")]
    if len(fields) != 2:
        return BadPriorityLine(
            number,
            text,
            f"{content!r} has {len(fields)} fields; write 'task id or glob, priority'.",
        )
    pattern, value = fields
    if not GLOB_PATTERN.fullmatch(pattern) or pattern[0] in ".-":
        return BadPriorityLine(
            number, text, f"{pattern!r} is not a task id or glob; use letters, digits, '.', '_', "
            "'-' and the wildcards '*', '?', '[...]'."
        )  # fmt: skip
    if not re.fullmatch(r"[+-]?\d+", value):
        return BadPriorityLine(
            number,
            text,
            f"the priority {value!r} is not a whole number; write one such as 10 or -5.",
        )
    priority = int(value)
    if abs(priority) > PRIORITY_LIMIT:
        return BadPriorityLine(
            number, text, f"the priority {priority} is out of range; keep it between "
            f"-{PRIORITY_LIMIT} and {PRIORITY_LIMIT}."
        )  # fmt: skip
    return PriorityRule(pattern, priority, number)


def parse_priorities(text: str) -> Priorities:
    """The rules and bad lines of a priorities file's text."""
    rules: list[PriorityRule] = []
    problems: list[BadPriorityLine] = []
    seen_content = False
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        header = tuple(part.strip().lower() for part in content.split(","))
        if content and not seen_content and header == HEADER:
            seen_content = True
            continue
        seen_content = seen_content or bool(content)
        parsed = _parse_line(number, line)
        if isinstance(parsed, PriorityRule):
            rules.append(parsed)
        elif parsed is not None:
            problems.append(parsed)
    return Priorities(tuple(rules), tuple(problems))


def priorities_path(root: Path) -> Path:
    return root / PRIORITIES_FILE


def read_priorities(root: Path) -> Priorities:
    """The priorities file of ``root``; none at all when it is missing. An unreadable file is
    one bad line (line 0), and then no rule applies."""
    path = priorities_path(root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Priorities()
    except (OSError, UnicodeDecodeError) as error:
        reason = f"cannot be read ({error.__class__.__name__}); make it a readable UTF-8 text file."
        return Priorities(problems=(BadPriorityLine(0, "", reason),), path=path)
    return replace(parse_priorities(text), path=path)


def rank(task: Task, priorities: Priorities) -> tuple[int, datetime, str]:
    """The sort key of a ready task: the highest priority first, then the oldest, then by id."""
    created = task.created_at or NEVER
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (-priorities.priority_of(task), created, task.id)


def ordered(tasks: Iterable[Task], priorities: Priorities) -> list[Task]:
    """Ready ``tasks`` in the order they should start."""
    return sorted(tasks, key=lambda task: rank(task, priorities))


def ordered_by(items: Iterable[T], priorities: Priorities, task_of: Callable[[T], Task]) -> list[T]:
    """``items`` (e.g. ``(task, attempt)`` pairs) in the order their tasks should start."""
    return sorted(items, key=lambda item: rank(task_of(item), priorities))
