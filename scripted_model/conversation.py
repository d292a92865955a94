"""What the scripted model reads from a ``POST /v1/messages`` body sent by Claude Code.

Facts this relies on (Claude Code 2.1.330, checked against the real binary):

- The prompt is a ``text`` block of a ``user`` message; Claude Code puts ``<system-reminder>``
  blocks (git status, attribution) before it in the same message. Interactive sessions append each
  new prompt to the same conversation, so the *latest* prompt message is the key, and the turn
  index counts the assistant replies after it.
- Tool results come back as ``user`` messages holding ``tool_result`` blocks.
- The working directory is stated as ``Primary working directory: /path`` in a mid-conversation
  ``role: "system"`` message (older versions: ``Working directory: /path`` in the system prompt).
- Side requests do not belong to the scripted conversation: the quota check (non-streamed,
  ``max_tokens: 1``, content ``"quota"``), tool-free helpers such as session-title generation
  (no ``tools``, often a JSON-schema ``output_config.format``), the auto-mode permission
  classifier (``stop_sequences`` ``</block>`` or ``</severity>``), and forked helpers that reuse
  the main conversation with an extra instruction (away summary, prompt suggestion, compaction).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STRUCTURED_OUTPUT_TOOL = "StructuredOutput"
"""The tool Claude Code adds for ``--json-schema``: its ``input_schema`` is the schema, and the
model must call it once with the structured output."""
STRUCTURED_OUTPUT_NUDGE = "[structured-output-enforce]"
"""How Claude Code's reminder starts when a reply ended without calling StructuredOutput: a
user message that is not a new prompt."""

_CWD = re.compile(r"(?:Primary working directory|Working directory):[ \t]*(\S[^\n]*)")
_REMINDER = "<system-reminder>"

FORKED_SIDE_PROMPTS = {
    "away_summary": "The user stepped away and is coming back.",
    "prompt_suggestion": "Reply with ONLY the suggestion",
    "compact": "Your task is to create a detailed summary of",
}
"""Instructions of Claude Code's forked helper requests (they carry the main tools)."""


@dataclass(frozen=True)
class Exchange:
    """One tool call since the latest prompt and what it returned."""

    name: str
    """The tool's name."""
    input: dict[str, Any]
    """The tool's input."""
    result: str
    """The tool result's text (empty while none came back)."""
    is_error: bool
    """Whether the tool result was an error."""


@dataclass(frozen=True)
class Conversation:
    """The parts of a request that choose and fill a scripted reply."""

    prompt: str
    """The text of the latest prompt (``<system-reminder>`` blocks left out)."""

    turn: int
    """How many assistant replies follow the latest prompt: the scenario's turn index."""

    cwd: str | None
    """The working directory Claude Code states, if it states one."""

    last_tool_result: str
    """The text of the tool results the request answers with, joined; empty if none."""

    session_id: str
    """Claude Code's session id (``X-Claude-Code-Session-Id``), empty if not sent."""

    model: str
    """The model the request names."""

    side_kind: str | None
    """Why this is a side request (``quota_check``, ``classifier``, ...), None for the main one."""

    exchanges: tuple[Exchange, ...] = ()
    """The tool calls since the latest prompt, in order, with their results."""

    output_schema: dict[str, Any] | None = None
    """The JSON Schema of ``--json-schema`` (the StructuredOutput tool's input), if offered."""

    earlier_prompts: tuple[str, ...] = ()
    """The prompts before the latest one in this conversation (a resumed or interactive
    session sends them again), oldest first; empty for a fresh session's first prompt."""

    earlier_exchanges: tuple[Exchange, ...] = ()
    """The tool calls made before the latest prompt, with their results."""

    def placeholders(self) -> dict[str, str]:
        """The values placeholders in scenario strings are filled with."""
        return {
            "cwd": self.cwd or ".",
            "prompt": self.prompt,
            "prompt_hash": hashlib.sha1(self.prompt.encode()).hexdigest()[:8],
            "session_id": self.session_id,
            "last_tool_result": self.last_tool_result,
            "turn": str(self.turn),
            "model": self.model,
        }


def blocks_of(content: Any) -> list[dict[str, Any]]:
    """A message's content as a list of blocks (a plain string becomes one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"] for b in blocks if b.get("type") == "text" and isinstance(b.get("text"), str)]


def _prompt_of(message: Mapping[str, Any]) -> str | None:
    """The prompt text of a user message, or None when it is not a prompt."""
    if message.get("role") != "user":
        return None
    blocks = blocks_of(message.get("content"))
    if any(b.get("type") == "tool_result" for b in blocks):
        return None
    texts = [t for t in _texts(blocks) if not t.lstrip().startswith(_REMINDER)]
    if texts and all(t.lstrip().startswith(STRUCTURED_OUTPUT_NUDGE) for t in texts):
        return None  # a reminder inside the same turn, not a new prompt
    return "\n".join(texts) if texts else None


def earlier_prompts(messages: list[Mapping[str, Any]], before: int) -> tuple[str, ...]:
    """The prompts of ``messages[:before]``, oldest first."""
    found = (_prompt_of(message) for message in messages[:before])
    return tuple(prompt for prompt in found if prompt is not None)


def latest_prompt(messages: list[Mapping[str, Any]]) -> tuple[int, str]:
    """The index and text of the latest prompt message; ``(-1, "")`` when there is none."""
    for index in range(len(messages) - 1, -1, -1):
        prompt = _prompt_of(messages[index])
        if prompt is not None:
            return index, prompt
    return -1, ""


def count_replies(messages: list[Mapping[str, Any]]) -> int:
    """Assistant replies in ``messages``; consecutive assistant messages count as one."""
    replies, previous = 0, None
    for message in messages:
        role = message.get("role")
        if role == "assistant" and previous != "assistant":
            replies += 1
        if role in ("assistant", "user"):
            previous = role
    return replies


def _tool_result_text(block: Mapping[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(_texts(blocks_of(content)))


def last_tool_result(messages: list[Mapping[str, Any]]) -> str:
    """The text of the tool results in the last message, joined by newlines."""
    if not messages or messages[-1].get("role") != "user":
        return ""
    blocks = blocks_of(messages[-1].get("content"))
    return "\n".join(_tool_result_text(b) for b in blocks if b.get("type") == "tool_result")


def exchanges_of(messages: list[Mapping[str, Any]]) -> tuple[Exchange, ...]:
    """Every tool call in ``messages`` with the result that answered it."""
    results: dict[str, tuple[str, bool]] = {}
    for message in messages:
        for block in blocks_of(message.get("content")):
            if block.get("type") == "tool_result":
                results[str(block.get("tool_use_id"))] = (
                    _tool_result_text(block),
                    bool(block.get("is_error")),
                )
    found = []
    for message in messages:
        if message.get("role") != "assistant":
            continue
        for block in blocks_of(message.get("content")):
            if block.get("type") == "tool_use":
                text, is_error = results.get(str(block.get("id")), ("", False))
                tool_input = block.get("input")
                found.append(
                    Exchange(
                        str(block.get("name")),
                        tool_input if isinstance(tool_input, dict) else {},
                        text,
                        is_error,
                    )
                )
    return tuple(found)


def output_schema_of(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The StructuredOutput tool's schema, when Claude Code offers that tool."""
    for tool in body.get("tools") or []:
        if isinstance(tool, Mapping) and tool.get("name") == STRUCTURED_OUTPUT_TOOL:
            schema = tool.get("input_schema")
            return dict(schema) if isinstance(schema, Mapping) else {}
    return None


def find_cwd(body: Mapping[str, Any]) -> str | None:
    """The working directory stated in the system prompt or a system message, if any."""
    texts = _texts(blocks_of(body.get("system")))
    for message in body.get("messages") or []:
        texts += _texts(blocks_of(message.get("content")))
    for text in texts:
        found = _CWD.search(text)
        if found:
            return found[1].strip()
    return None


def side_kind(body: Mapping[str, Any], prompt: str) -> str | None:
    """Why ``body`` is a side request rather than a turn of the main conversation, or None."""
    stops = body.get("stop_sequences") or []
    if "</block>" in stops or "</severity>" in stops:
        return "classifier"
    if not body.get("tools"):
        return "quota_check" if prompt.strip() == "quota" else "tool_free"
    for kind, marker in FORKED_SIDE_PROMPTS.items():
        if marker in prompt:
            return kind
    return None


def _session_id(body: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "x-claude-code-session-id":
            return value
    try:
        user = json.loads((body.get("metadata") or {}).get("user_id") or "{}")
    except (TypeError, ValueError):
        return ""
    return str(user.get("session_id", "")) if isinstance(user, dict) else ""


def read_conversation(body: Mapping[str, Any], headers: Mapping[str, str]) -> Conversation:
    """The conversation a ``/v1/messages`` request body carries."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, Mapping)]
    index, prompt = latest_prompt(messages)
    return Conversation(
        prompt=prompt,
        turn=count_replies(messages[index + 1 :]),
        cwd=find_cwd(body),
        last_tool_result=last_tool_result(messages),
        session_id=_session_id(body, headers),
        model=str(body.get("model") or "claude-scripted"),
        side_kind=side_kind(body, prompt),
        exchanges=exchanges_of(messages[index + 1 :]),
        output_schema=output_schema_of(body),
        earlier_prompts=earlier_prompts(messages, max(index, 0)),
        earlier_exchanges=exchanges_of(messages[: max(index, 0)]),
    )
