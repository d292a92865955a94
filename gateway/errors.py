"""The gateway's errors, each named by its condition, and the Anthropic-shaped error body
every refusal is answered with.

``str(error)`` is one sentence. Errors a caller can cause are answered as
``{"type": "error", "error": {"type": ..., "message": ...}}`` with ``x-should-retry: false``,
so Claude Code gives up at once instead of retrying for minutes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestration_protocol.gateway import GatewayCaller

EXIT_OK = 0
"""Stopped by SIGTERM or SIGINT after serving."""
EXIT_BAD_SETTING = 2
"""A setting or the credential cannot be used; nothing was started."""
EXIT_CANNOT_LISTEN = 3
"""A socket cannot be bound."""


class GatewayError(Exception):
    """Base of every error the gateway reports."""


class BadSetting(GatewayError, ValueError):
    """A setting (argument or environment) cannot be used."""



class UpstreamUnreachable(GatewayError, ConnectionError):
    """The model endpoint cannot be reached (connect failure or timeout)."""


class RequestRefused(GatewayError):
    """A request the gateway answers itself, with an Anthropic-shaped error."""

    def __init__(
        self, status: int, error_type: str, message: str, caller: GatewayCaller | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.caller = caller
        """The caller, when it was known (its ledger gets the refusal)."""


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """Anthropic's error JSON."""
    return {"type": "error", "error": {"type": error_type, "message": message}}


class EgressRefused(GatewayError, ValueError):
    """An allowed name resolves to an address the egress proxy never connects to."""
