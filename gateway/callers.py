"""Who is calling: the caller token in a request, and whether its attempt may still be served.

The model API takes the token as ``x-api-key`` or ``Authorization: Bearer``; the egress proxy as
``Proxy-Authorization: Basic base64(<task>:<token>)``. A token is good only while
:func:`~orchestration_protocol.gateway.caller_refusal` finds its attempt holding a live claim.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from orchestration_protocol import Layout
from orchestration_protocol.gateway import GatewayCaller, caller_refusal, find_caller

from .errors import RequestRefused

UNKNOWN_CALLER = (
    "the gateway does not know this caller token; a worker gets one from its runtime after "
    "claiming an attempt"
)


def api_token(headers: Mapping[str, str]) -> str | None:
    """The caller token of a model API request (``x-api-key`` first, then Bearer)."""
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, value = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def proxy_credentials(value: str | None) -> tuple[str, str] | None:
    """``(task, token)`` from a ``Proxy-Authorization: Basic`` value, or None."""
    scheme, _, encoded = (value or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    task, sep, token = decoded.partition(":")
    return (task, token) if sep and token else None


def admit(
    layout: Layout, token: str | None, task_id: str | None = None, node: str | None = None
) -> GatewayCaller:
    """The caller a token speaks for, if its attempt may be served now; else
    :class:`RequestRefused` (401 unknown, 403 refused). ``task_id``, when the client named
    one (egress), must match the token's; ``node``, this gateway's node, the token's."""
    caller = find_caller(layout, token) if token else None
    if caller is None or (task_id is not None and task_id != caller.task_id):
        raise RequestRefused(401, "authentication_error", UNKNOWN_CALLER)
    refusal = caller_refusal(layout, caller, node=node)
    if refusal is not None:
        message = f"the gateway refuses this caller: {refusal}"
        raise RequestRefused(403, "permission_error", message, caller)
    return caller
