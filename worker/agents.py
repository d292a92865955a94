"""The agents a worker can run a prompt with: headless Claude Code, or a plain shell command.

Each agent turns a task into a command line and its output lines into two things: a readable
log line (for ``logs/<id>.log`` and ``docker logs``) and, at the end, an :class:`AgentReport`.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from orchestration_protocol import AgentKind, Task, TaskKind, plan_json_schema
from orchestration_protocol.claude_cli import ClaudeNotFound, find_claude
from orchestration_protocol.plans import PLANNER_DISALLOWED_TOOLS, PLANNER_PROMPT

from .errors import AgentNotFound

WORKER_PROMPT = """\
You are a worker of claude-orchestrator, running headless in a container with no person to ask.
Your working directory is a fresh git clone, already on the branch for this task. Make the
change the task asks for, completely, in this directory. Do not push, do not switch or create
branches, and do not ask questions: decide sensibly and say what you decided. The worker commits
and reports your changes when you finish. End with a short summary: what you changed, in which
files, and anything left undone."""

OUTPUT_TAIL_LINES = 200
OUTPUT_TAIL_BYTES = 1024 * 1024
"""A command's output kept for its result: its last lines, at most this many characters."""
TRANSCRIPT_MAX_BYTES = 64 * 1024 * 1024
"""Most characters of stream-json kept for ``transcript.jsonl`` (then one marker line)."""
DETAIL_CHARS = 2000


class Tail:
    """The last lines of a stream, bounded by count and by characters."""

    def __init__(self, max_lines: int, max_chars: int) -> None:
        self.lines: deque[str] = deque()
        self.max_lines, self.max_chars, self.chars = max_lines, max_chars, 0

    def append(self, line: str) -> None:
        line = line[-self.max_chars :]
        self.lines.append(line)
        self.chars += len(line) + 1
        while len(self.lines) > self.max_lines or self.chars > self.max_chars:
            self.chars -= len(self.lines.popleft()) + 1

    def text(self, separator: str = "\n") -> str:
        return separator.join(self.lines)


class Transcript(list[str]):
    """Stream-json lines for ``transcript.jsonl``, up to :data:`TRANSCRIPT_MAX_BYTES`."""

    chars = 0

    def keep(self, line: str) -> None:
        if self.chars > TRANSCRIPT_MAX_BYTES:
            return
        self.chars += len(line) + 1
        if self.chars > TRANSCRIPT_MAX_BYTES:
            line = json.dumps({"type": "orchestrator", "note": "transcript cut: over its limit"})
        self.append(line)


@dataclass
class AgentReport:
    """What the agent said about its run."""

    output: str = ""
    """Final text (Claude's result, or the command's last output lines)."""
    is_error: bool = False
    """Whether the agent itself reported failure."""
    error: str | None = None
    """The agent's own error text, when it gave one."""
    cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    num_turns: int | None = None
    structured_output: Any = None
    """What the agent handed to Claude Code's StructuredOutput tool (``--json-schema``), if any."""


@dataclass
class ClaudeAgent:
    """Headless ``claude -p`` with stream-json output."""

    task: Task
    model: str | None = None
    max_budget_usd: str | None = None
    """Passed as ``--max-budget-usd``."""
    transcript: Transcript = field(default_factory=Transcript)
    _result: dict[str, Any] | None = None
    _tail: Tail = field(default_factory=lambda: Tail(20, DETAIL_CHARS))

    def command(self) -> list[str]:
        try:
            binary = str(find_claude())
        except ClaudeNotFound as error:
            raise AgentNotFound(
                f"The claude CLI is not installed here ({error}); rebuild the image with scripts/build-images.sh."
            ) from error
        command = [
            binary,
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--dangerously-skip-permissions",
            "--append-system-prompt",
            PLANNER_PROMPT if self.task.kind == TaskKind.PLAN else WORKER_PROMPT,
        ]
        if self.task.kind == TaskKind.PLAN:
            command += ["--json-schema", json.dumps(plan_json_schema())]
            command += ["--disallowedTools", *PLANNER_DISALLOWED_TOOLS]
        model = self.task.model or self.model
        if model:
            command += ["--model", model]
        if self.max_budget_usd:
            command += ["--max-budget-usd", self.max_budget_usd]
        return command

    def stdin_text(self) -> str:
        return self.task.prompt

    def render(self, line: str) -> list[str]:
        """Log lines for one line of the CLI's output."""
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            self._tail.append(line)
            return [line] if line.strip() else []
        if not isinstance(event, dict):
            return [line]
        self.transcript.keep(line)
        kind = event.get("type")
        if kind == "result":
            self._result = event
            state = "error" if event.get("is_error") else "done"
            cost = event.get("total_cost_usd")
            return [f"[claude] {state}: {event.get('num_turns')} turns, cost ${cost}"]
        if kind == "system" and event.get("subtype") == "init":
            return [f"[claude] started, model {event.get('model')}"]
        return [text for text in _render_message(event) if text]

    def report(self, exit_code: int) -> AgentReport:
        result = self._result
        if result is None:
            detail = self._tail.text(" | ") or "no output"
            return AgentReport(
                is_error=True, error=f"claude exited {exit_code} without a result: {detail[-500:]}"
            )
        subtype = result.get("subtype")
        is_error = bool(result.get("is_error")) or subtype != "success"
        text = result.get("result") if isinstance(result.get("result"), str) else ""
        kind = "" if subtype in (None, "success") else f" ({subtype})"
        return AgentReport(
            output=text or "",
            is_error=is_error,
            error=(f"claude failed{kind}: {(text or 'no message')[:500]}" if is_error else None),
            cost_usd=_count(result.get("total_cost_usd"), float),
            usage=result.get("usage") if isinstance(result.get("usage"), dict) else None,
            num_turns=_count(result.get("num_turns"), int),
            structured_output=result.get("structured_output"),
        )


def _count(value: Any, kind: type[float] | type[int]) -> Any:
    """``value`` when it is a finite number of at least 0 of ``kind`` (the CLI's result line is
    the agent's to write: anything else is dropped rather than published)."""
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        return None
    return value if 0 <= value < float("inf") else None


def _render_message(event: dict[str, Any]) -> list[str]:
    message = event.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return []
    lines = []
    for block in message["content"]:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            lines.append(f"[claude] {block.get('text', '').strip()}")
        elif block.get("type") == "tool_use":
            lines.append(f"[tool] {block.get('name')}: {_summarize(block.get('input'))}")
        elif block.get("type") == "tool_result":
            content = block.get("content")
            text = content if isinstance(content, str) else json.dumps(content)
            lines.append(f"[tool result] {_shorten(text)}")
    return lines


def _summarize(tool_input: object) -> str:
    if isinstance(tool_input, dict):
        for key in ("command", "file_path", "path", "pattern", "url", "description"):
            if key in tool_input:
                return _shorten(str(tool_input[key]))
    return _shorten(json.dumps(tool_input))


def _shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class CommandAgent:
    """Runs the prompt as a shell command in the clone (``agent: command``; needs no model)."""

    task: Task
    transcript: Transcript = field(default_factory=Transcript)
    _tail: Tail = field(default_factory=lambda: Tail(OUTPUT_TAIL_LINES, OUTPUT_TAIL_BYTES))

    def command(self) -> list[str]:
        return ["/bin/sh", "-c", self.task.prompt]

    def stdin_text(self) -> str | None:
        return None

    def render(self, line: str) -> list[str]:
        self._tail.append(line)
        return [line]

    def report(self, exit_code: int) -> AgentReport:
        output = self._tail.text()
        failed = exit_code != 0
        return AgentReport(
            output=output,
            is_error=failed,
            error=f"command exited {exit_code}: {_shorten(output[-300:]) or 'no output'}"
            if failed
            else None,
        )


Agent = ClaudeAgent | CommandAgent


def agent_for(task: Task, model: str | None, max_budget_usd: str | None = None) -> Agent:
    if task.agent == AgentKind.COMMAND:
        return CommandAgent(task)
    return ClaudeAgent(task, model=model, max_budget_usd=max_budget_usd)
