"""What a scripted program answers with: one :class:`Step` per reply, and the small helpers the
programs share (a Bash call, the exchanges of one tool so far)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .conversation import Conversation, Exchange


@dataclass(frozen=True)
class Step:
    """The program's next reply: tool calls (stop reason ``tool_use``) or, with none, the final
    text (``end_turn``)."""

    text: str = ""
    tool_uses: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _bash(command: str, description: str, timeout_ms: int | None = None) -> tuple[str, dict[str, Any]]:
    tool_input: dict[str, Any] = {"command": command, "description": description}
    if timeout_ms:
        tool_input["timeout"] = timeout_ms
    return ("Bash", tool_input)


def _done(conversation: Conversation, name: str) -> list[Exchange]:
    return [e for e in conversation.exchanges if e.name == name]
