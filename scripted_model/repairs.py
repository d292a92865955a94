"""Programs for the check loop (issue 18): a repair round, and a resolver of merge conflicts.

- ``repair``: answers the prompt of a repair round (``orchestration_protocol.repair_prompt``).
  It fixes the code only from the *earlier turns of the same conversation*: the task's prompt
  (``scripted: break the check`` or ``scripted: unfixable``) and the Write that made the code
  must be in the request, as they are when Claude Code resumes the task's session. A fresh
  session, which holds neither, changes nothing and says why, so its check still fails. The
  failing test's name must be in the prompt too (the failure reached the agent).
- ``resolve``: finds the files with conflict markers (``grep``), reads them (``cat``), writes
  each with both sides kept (ours, then the lines of theirs that ours lacks), and checks that no
  marker is left.

The first runs are plain scenarios (``scenarios/checks.json``).
"""

from __future__ import annotations

import shlex
from typing import Any

from .conversation import Conversation, Exchange
from .steps import Step, _bash, _done

BREAK_MARK = "scripted: break the check"
UNFIXABLE_MARK = "scripted: unfixable"
GREETING_BUG = 'return "Hello " + name'
GREETING_FIX = 'return f"Hello, {name}!"'
GREETING_TEST = "test_greet"
FIND_CONFLICTS = "grep -rlI --exclude-dir=.git -e '^<<<<<<< ' . | sort"


def _original(conversation: Conversation) -> str | None:
    for prompt in reversed(conversation.earlier_prompts):
        if BREAK_MARK in prompt or UNFIXABLE_MARK in prompt:
            return prompt
    return None


def _wrote(exchanges: tuple[Exchange, ...], name: str, text: str) -> bool:
    return any(
        e.name == "Write"
        and str(e.input.get("file_path", "")).endswith(f"/{name}")
        and text in str(e.input.get("content", ""))
        for e in exchanges
    )


def repair_program(conversation: Conversation) -> Step:
    original = _original(conversation)
    if original is None:
        return Step(
            "This conversation holds no earlier turns: I do not know what I changed before, so I "
            "cannot tell what to fix. Nothing was changed."
        )
    cwd = conversation.cwd or "."
    if UNFIXABLE_MARK in original:
        return _unfixable(conversation, cwd)
    if not _wrote(conversation.earlier_exchanges, "greeting.py", GREETING_BUG):
        return Step("The earlier turns do not show the code I wrote; nothing was changed.")
    if GREETING_TEST not in conversation.prompt:
        return Step("The failure did not reach me (no failing test is named); nothing was changed.")
    if not _done(conversation, "Read"):
        return Step("Reading greeting.py.", [("Read", {"file_path": f"{cwd}/greeting.py"})])
    if not _done(conversation, "Edit"):
        edit = {"file_path": f"{cwd}/greeting.py", "old_string": GREETING_BUG,
                "new_string": GREETING_FIX}
        return Step("test_greet expects 'Hello, Ada!': greet() forgot the comma and the "
                    "exclamation mark.", [("Edit", edit)])
    return Step("Fixed greet() in greeting.py to return 'Hello, <name>!', which test_greet "
                "expects.")


def _unfixable(conversation: Conversation, cwd: str) -> Step:
    if not _done(conversation, "Read"):
        return Step("Reading clock.py.", [("Read", {"file_path": f"{cwd}/clock.py"})])
    if not _done(conversation, "Edit"):
        edit = {"file_path": f"{cwd}/clock.py", "old_string": "def year():",
                "new_string": "def year():  # the check needs a clock this worker lacks"}
        return Step("Looking at test_clock.", [("Edit", edit)])
    return Step("I could not fix test_clock: it needs ORCHESTRATOR_NEVER_SET, which this "
                "environment does not provide. The check still fails.")


# --- resolve ---------------------------------------------------------------------------------


def merge_both_sides(text: str) -> str:
    """``text`` with each conflict replaced by our side, then the lines of theirs ours lacks
    (a diff3 base section is dropped)."""
    out: list[str] = []
    ours: list[str] = []
    theirs: list[str] = []
    section = None
    for line in text.splitlines():
        if line.startswith("<<<<<<< "):
            section, ours, theirs = "ours", [], []
        elif line.startswith("||||||| ") and section == "ours":
            section = "base"
        elif line == "=======" and section in ("ours", "base"):
            section = "theirs"
        elif line.startswith(">>>>>>> ") and section == "theirs":
            out += ours + [kept for kept in theirs if kept not in ours]
            section = None
        elif section == "ours":
            ours.append(line)
        elif section == "theirs":
            theirs.append(line)
        elif section is None:
            out.append(line)
    return "\n".join(out) + "\n"


def _by_description(conversation: Conversation, description: str) -> Exchange | None:
    for exchange in conversation.exchanges:
        if exchange.name == "Bash" and exchange.input.get("description") == description:
            return exchange
    return None


def resolve_program(conversation: Conversation) -> Step:
    cwd = conversation.cwd or "."
    found = _by_description(conversation, "Find the conflicted files")
    if found is None:
        return Step("Finding the files with conflict markers.",
                    [_bash(FIND_CONFLICTS, "Find the conflicted files")])
    files = [line.strip().removeprefix("./") for line in found.result.splitlines() if line.strip()]
    reads = {f: _by_description(conversation, f"Read {f}") for f in files}
    uses: list[tuple[str, dict[str, Any]]]
    if files and any(read is None for read in reads.values()):
        uses = [("Read", {"file_path": f"{cwd}/{f}"}) for f in files]  # Write needs a Read first
        uses += [_bash(f"cat -- {shlex.quote(f)}", f"Read {f}") for f in files]
        return Step("Reading both sides.", uses)
    if files and not _done(conversation, "Write"):
        uses = [
            ("Write", {"file_path": f"{cwd}/{f}", "content": merge_both_sides(read.result)})
            for f, read in reads.items()
            if read is not None
        ]
        return Step("Keeping both sides of every conflict.", uses)
    verified = _by_description(conversation, "Check that no marker is left")
    if verified is None:
        return Step("", [_bash(f"{FIND_CONFLICTS}; echo markers-checked",
                               "Check that no marker is left")])
    left = [line for line in verified.result.splitlines() if line.strip() and "markers-checked" not in line]
    if left:
        return Step(f"Markers are still left in {', '.join(left)}.")
    return Step(f"Resolved the conflicts in {', '.join(files) or 'no file'}, keeping both sides.")


REPAIR_PROGRAMS = {"repair": repair_program, "resolve": resolve_program}
"""The programs of this module, by name."""
