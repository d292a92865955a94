"""Reading token usage out of a reply while it passes through.

A streamed reply is Server-Sent Events: ``message_start`` carries ``message.usage`` (input and
cache tokens), ``message_delta`` carries ``usage`` (output tokens, cumulative; newer replies
repeat the input counts too). A non-streamed reply is one JSON object with ``usage``. The meter
sees the bytes as they are relayed and never holds more than one event line (or, for JSON,
``max_json_bytes``) at a time.
"""

from __future__ import annotations

import json
from typing import Any

USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
MAX_LINE_BYTES = 4 * 1024 * 1024


class UsageMeter:
    """Feed it a reply's bytes with :meth:`feed`; read :attr:`usage` and :attr:`model` after."""

    def __init__(self, streamed: bool, max_json_bytes: int = 16 * 1024 * 1024) -> None:
        self.streamed = streamed
        self.usage: dict[str, int] = dict.fromkeys(USAGE_FIELDS, 0)
        """The latest count of each field seen so far."""
        self.model: str | None = None
        """The model the reply names, if it named one."""
        self.error: str | None = None
        """An error event's message, if the stream carried one."""
        self.settled = False
        """Whether the final usage was seen (``message_delta``, or a whole JSON message)."""
        self._buffer = bytearray()
        self._max_json_bytes = max_json_bytes
        self._overflow = False

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the reply."""
        if not self.streamed:
            if len(self._buffer) + len(chunk) > self._max_json_bytes:
                self._overflow = True
            if not self._overflow:
                self._buffer += chunk
            return
        self._buffer += chunk
        while (end := self._buffer.find(b"\n")) >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if not self._overflow:
                self._line(line.rstrip(b"\r"))
            self._overflow = False
        if len(self._buffer) > MAX_LINE_BYTES:  # a huge delta: skip to its end, it has no usage
            self._buffer.clear()
            self._overflow = True

    def finish(self) -> None:
        """The reply ended: read a non-streamed body."""
        if self.streamed or self._overflow:
            return
        self.event(_json(bytes(self._buffer)))
        self._buffer.clear()

    def broken_off(self, message: str) -> bytes | None:
        """What the caller gets when the upstream broke off mid-reply: an SSE ``error`` event
        (None for a JSON reply: it just ends)."""
        if not self.streamed:
            return None
        data = json.dumps({"type": "error", "error": {"type": "api_error", "message": message}})
        return f"event: error\ndata: {data}\n\n".encode()

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if b'"message_start"' in data or b'"message_delta"' in data or b'"error"' in data:
            self.event(_json(data))

    def event(self, event: Any) -> None:
        """Take one decoded stream event (or a whole non-streamed message)."""
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start" and isinstance(event.get("message"), dict):
            event = event["message"]
        elif kind in ("message_delta", "message") and isinstance(event.get("usage"), dict):
            self.settled = True
        elif kind == "error" and isinstance(event.get("error"), dict):
            self.error = str(event["error"].get("message", "error event"))[:500]
            return
        if isinstance(event.get("model"), str):
            self.model = event["model"]
        usage = event.get("usage")
        if isinstance(usage, dict):
            for name in USAGE_FIELDS:
                value = usage.get(name)
                if isinstance(value, int) and value >= 0:
                    self.usage[name] = value


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
