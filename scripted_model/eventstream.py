"""AWS event-stream framing (``application/vnd.amazon.eventstream``), as Bedrock's
``InvokeModelWithResponseStream`` answers: a test double's encoder.

A message is a prelude (total length, headers length: big-endian uint32 each; then the CRC32 of
those 8 bytes), the headers (name length: 1 byte, name, value type 7 = string, value length:
uint16, value), the payload, and the CRC32 of everything before it. Bedrock's chunk message has
headers ``:event-type chunk``, ``:content-type application/json``, ``:message-type event`` and
the payload ``{"bytes": base64(<one Anthropic stream event as JSON>)}``; the last event
(``message_stop``) also carries ``amazon-bedrock-invocationMetrics``.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping
from typing import Any

STRING_TYPE = 7
"""The header value type of a UTF-8 string."""


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Headers in event-stream form (string values only)."""
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", STRING_TYPE, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message."""
    raw_headers = encode_headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
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
    """A Bedrock exception message (e.g. ``throttlingException``) mid-stream."""
    headers = {":exception-type": kind, ":content-type": "application/json",
               ":message-type": "exception"}
    return encode_message(headers, json.dumps({"message": message}).encode())
