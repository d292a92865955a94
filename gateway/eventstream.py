"""Metering a Bedrock reply: an AWS event stream (``application/vnd.amazon.eventstream``).

Each ``chunk`` message's payload is ``{"bytes": base64(<Anthropic stream event JSON>)}``, so the
usage is read from the same ``message_start`` / ``message_delta`` events as on the Anthropic
route; the last event also carries ``amazon-bedrock-invocationMetrics`` (input and output token
counts), used when the events named none. An ``exception`` message (e.g. ``throttlingException``
mid-stream) is the reply's error. botocore's parser checks the framing and both CRCs; a stream it
cannot parse is relayed on unmetered (the ledger line then says so).
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any, cast

from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from .usage import UsageMeter

EVENTSTREAM_TYPE = "application/vnd.amazon.eventstream"


class EventStreamMeter:
    """Feed it a Bedrock stream's bytes; read :attr:`usage`, :attr:`model`, :attr:`error`."""

    streamed = True

    def __init__(self) -> None:
        self._events = UsageMeter(streamed=True)
        self._buffer: EventStreamBuffer | None = EventStreamBuffer()
        self._metrics: dict[str, Any] = {}
        self.error: str | None = None
        """An exception message's text, or why the stream could not be read."""

    @property
    def usage(self) -> dict[str, int]:
        usage = dict(self._events.usage)
        if not usage["input_tokens"] and not usage["output_tokens"]:
            for field, metric in (("input_tokens", "inputTokenCount"),
                                  ("output_tokens", "outputTokenCount")):
                value = self._metrics.get(metric)
                if isinstance(value, int) and value >= 0:
                    usage[field] = value
        return usage

    @property
    def model(self) -> str | None:
        return self._events.model

    def feed(self, chunk: bytes) -> None:
        if self._buffer is None:
            return
        self._buffer.add_data(chunk)
        try:
            for message in self._buffer:
                self._message(message)
        except (ParserError, ValueError) as error:
            self._buffer = None
            self.error = f"the Bedrock event stream could not be read ({type(error).__name__})"

    def finish(self) -> None:
        """Nothing buffered is worth reading at the end."""

    def broken_off(self, message: str) -> bytes:
        """What the caller gets when the upstream broke off mid-stream: an exception message."""
        return exception_message("internalServerException", message)

    def _message(self, message: EventStreamMessage) -> None:
        headers = cast("dict[str, Any]", message.headers)
        payload = _json(message.payload)
        if headers.get(":message-type") != "event":
            kind = headers.get(":exception-type") or headers.get(":error-code") or "error"
            text = payload.get("message") if isinstance(payload, dict) else None
            self.error = f"{kind}: {text or 'no message'}"[:500]
            return
        if headers.get(":event-type") != "chunk" or not isinstance(payload, dict):
            return
        try:
            event = _json(base64.b64decode(str(payload.get("bytes", "")), validate=True))
        except binascii.Error:
            return
        if isinstance(event, dict):
            metrics = event.get("amazon-bedrock-invocationMetrics")
            if isinstance(metrics, dict):
                self._metrics = metrics
            self._events.event(event)
            if self._events.error is not None:
                self.error = self._events.error


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers."""
    raw = b"".join(struct.pack(">B", len(k.encode())) + k.encode()
                   + struct.pack(">BH", 7, len(v.encode())) + v.encode() for k, v in headers.items())
    prelude = struct.pack(">II", 16 + len(raw) + len(payload), len(raw))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + raw + payload
    return message + struct.pack(">I", binascii.crc32(message))


def exception_message(kind: str, message: str) -> bytes:
    """A Bedrock exception message, as the stream carries one."""
    headers = {":exception-type": kind, ":content-type": "application/json",
               ":message-type": "exception"}
    return encode_message(headers, json.dumps({"message": message}).encode())


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
