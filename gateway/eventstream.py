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
from collections.abc import Mapping
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
    def settled(self) -> bool:
        """Whether the final usage was seen."""
        return self._events.settled or bool(self._metrics)

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


STRING_TYPE = 7
"""The header value type of a UTF-8 string."""


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Headers in event-stream form (string values only): name length (1 byte), name, value
    type 7, value length (uint16), value."""
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", STRING_TYPE, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message: a prelude (total length, headers length, both big-endian
    uint32, then their CRC32), the headers, the payload, and the CRC32 of all before it."""
    raw_headers = encode_headers(headers)
    prelude = struct.pack(">II", 16 + len(raw_headers) + len(payload), len(raw_headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + raw_headers + payload
    return message + struct.pack(">I", binascii.crc32(message))


def chunk_message(event: Mapping[str, Any]) -> bytes:
    """A Bedrock ``chunk`` message carrying one Anthropic stream event."""
    data = base64.b64encode(json.dumps(event).encode()).decode()
    headers = {":event-type": "chunk", ":content-type": "application/json",
               ":message-type": "event"}
    return encode_message(headers, json.dumps({"bytes": data}).encode())


def exception_message(kind: str, message: str) -> bytes:
    """A Bedrock exception message (e.g. ``throttlingException``), as the stream carries one."""
    headers = {":exception-type": kind, ":content-type": "application/json",
               ":message-type": "exception"}
    return encode_message(headers, json.dumps({"message": message}).encode())


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
