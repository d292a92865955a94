"""AWS event-stream framing (``application/vnd.amazon.eventstream``), as Bedrock's
``InvokeModelWithResponseStream`` answers: the test double uses the gateway's one encoder.

Bedrock's chunk message has headers ``:event-type chunk``, ``:content-type application/json``,
``:message-type event`` and the payload ``{"bytes": base64(<one Anthropic stream event as
JSON>)}``; the last event (``message_stop``) also carries ``amazon-bedrock-invocationMetrics``.
"""

from __future__ import annotations

from gateway.eventstream import (
    STRING_TYPE,
    chunk_message,
    encode_headers,
    encode_message,
    exception_message,
)

__all__ = ["STRING_TYPE", "chunk_message", "encode_headers", "encode_message", "exception_message"]
