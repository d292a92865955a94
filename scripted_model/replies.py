"""Scripted replies and their wire forms: a Messages API JSON message, or its SSE stream.

The stream has the shape the real API gives and Claude Code accepts: ``message_start``; per
content block ``content_block_start``, one or more ``content_block_delta`` (``text_delta`` or
``input_json_delta``), ``content_block_stop``; then ``message_delta`` (stop reason, usage) and
``message_stop``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .conversation import STRUCTURED_OUTPUT_TOOL, Conversation
from .programs import PROGRAMS
from .scenario import Scenario, ScenarioBook, Usage, fill_placeholders

CHUNK_CHARS = 40
"""Text and tool-input JSON are streamed in deltas of at most this many characters."""

SIDE_USAGE = Usage(input_tokens=10, output_tokens=5)
"""Token counts reported for side requests."""


@dataclass(frozen=True)
class Reply:
    """One assistant message to send."""

    content: list[dict[str, Any]]
    """Content blocks: ``text`` and ``tool_use``."""

    stop_reason: str
    """``tool_use`` when the message calls tools, else ``end_turn``."""

    usage: Usage
    """Token counts to report."""

    model: str
    """The model the request named (echoed back)."""

    delay_s: float = 0.0
    """Seconds to wait before sending."""

    id: str = field(default_factory=lambda: f"msg_scripted_{uuid.uuid4().hex[:20]}")
    """The message id."""


@dataclass(frozen=True)
class ErrorReply:
    """An API failure: HTTP status and Anthropic's error JSON."""

    status: int
    """The HTTP status."""

    body: dict[str, Any]
    """``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``."""

    retryable: bool
    """Sent as ``x-should-retry``; false tells the CLI not to retry."""


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """Anthropic's error JSON."""
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": f"req_scripted_{uuid.uuid4().hex[:20]}",
    }


def text_block(text: str) -> dict[str, Any]:
    """A ``text`` content block."""
    return {"type": "text", "text": text}


def tool_use_block(name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    """A ``tool_use`` content block with a fresh id."""
    return {
        "type": "tool_use",
        "id": f"toolu_scripted_{uuid.uuid4().hex[:20]}",
        "name": name,
        "input": tool_input,
    }


def scenario_reply(
    scenario: Scenario, conversation: Conversation, groups: Mapping[str, str]
) -> Reply | ErrorReply:
    """The reply of ``scenario`` at the conversation's turn."""
    values = {**conversation.placeholders(), **groups}
    if scenario.program is not None:
        return _program_reply(scenario, conversation)
    error = scenario.error
    if error is not None and error.at_turn == conversation.turn:
        body = error_body(error.type, fill_placeholders(error.message, values))
        return ErrorReply(status=error.status, body=body, retryable=error.retryable)
    if conversation.turn < len(scenario.turns):
        turn = scenario.turns[conversation.turn]
        content = [text_block(fill_placeholders(turn.text, values))] if turn.text else []
        content += [
            tool_use_block(use.name, fill_placeholders(use.input, values))
            for use in turn.tool_uses
        ]
        return Reply(content, "tool_use", scenario.usage, conversation.model, turn.delay_s)
    if conversation.output_schema is not None and conversation.turn == len(scenario.turns):
        output = scenario.structured_output or example_of(conversation.output_schema)
        block = tool_use_block(STRUCTURED_OUTPUT_TOOL, fill_placeholders(output, values))
        return Reply([block], "tool_use", scenario.usage, conversation.model)
    text = fill_placeholders(scenario.final_text, values)
    return Reply(
        [text_block(text)], "end_turn", scenario.usage, conversation.model, scenario.final_delay_s
    )


def _program_reply(scenario: Scenario, conversation: Conversation) -> Reply:
    step = PROGRAMS[scenario.program or ""](conversation)
    if not step.tool_uses:
        return Reply([text_block(step.text or "Done.")], "end_turn", scenario.usage,
                     conversation.model)
    content = [text_block(step.text)] if step.text else []
    content += [tool_use_block(name, tool_input) for name, tool_input in step.tool_uses]
    return Reply(content, "tool_use", scenario.usage, conversation.model)


def example_of(schema: Mapping[str, Any]) -> Any:
    """A small value that fits a JSON schema (for helpers that ask for JSON output)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: example_of(properties.get(name, {})) for name in schema.get("required", [])}
    return {"string": "Scripted session", "integer": 0, "number": 0, "boolean": False}.get(
        str(kind), [] if kind == "array" else None
    )


def side_text(body: Mapping[str, Any], kind: str) -> str:
    """A harmless answer to a side request of ``kind``."""
    if kind == "classifier":
        stops = body.get("stop_sequences") or []
        return "<severity>0</severity>" if "</severity>" in stops else "<block>no</block>"
    output_format = (body.get("output_config") or {}).get("format") or body.get("output_format")
    if isinstance(output_format, Mapping) and output_format.get("type") == "json_schema":
        return json.dumps(example_of(output_format.get("schema") or {}))
    if kind == "quota_check":
        return "ok"
    return "Scripted session."


def plan_reply(
    book: ScenarioBook, conversation: Conversation, body: Mapping[str, Any]
) -> tuple[Reply | ErrorReply, str]:
    """The reply to a ``/v1/messages`` request and the name of the scenario that gave it
    (``side:<kind>`` for side requests, which never touch a scenario)."""
    if conversation.side_kind is not None:
        text = side_text(body, conversation.side_kind)
        reply = Reply([text_block(text)], "end_turn", SIDE_USAGE, conversation.model)
        return reply, f"side:{conversation.side_kind}"
    scenario, groups = book.select(conversation.prompt)
    return scenario_reply(scenario, conversation, groups), scenario.name


def _usage_json(usage: Usage) -> dict[str, Any]:
    return usage.model_dump()


def message_json(reply: Reply) -> dict[str, Any]:
    """The reply as a whole (non-streamed) Messages API message."""
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": _usage_json(reply.usage),
    }


def _chunks(text: str) -> list[str]:
    return [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]


def _block_events(index: int, block: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    if block["type"] == "tool_use":
        start = {**block, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": part}
            for part in _chunks(json.dumps(block["input"]))
        ]
    else:
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": part} for part in _chunks(block["text"])]
    yield "content_block_start", {"type": "content_block_start", "index": index,
                                  "content_block": start}
    for delta in deltas:
        yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                      "delta": delta}
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


def stream_events(reply: Reply) -> Iterator[tuple[str, dict[str, Any]]]:
    """The reply as server-sent events: ``(event name, data)`` pairs."""
    start = {**message_json(reply), "content": [], "stop_reason": None}
    start["usage"] = {**_usage_json(reply.usage), "output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(reply.content):
        yield from _block_events(index, block)
    yield "message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
        "usage": _usage_json(reply.usage),
    }
    yield "message_stop", {"type": "message_stop"}


def encode_event(name: str, data: Mapping[str, Any]) -> bytes:
    """One server-sent event on the wire."""
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
