"""What the model API forwards: only what Claude Code needs, so the model API is no way out.

An agent that reaches the model API with the real credential swapped in could otherwise make
Anthropic's servers fetch URLs for it (``mcp_servers``, the ``web_fetch``/``web_search`` server
tools, code execution with its ``container``, the Files API) although its ``egress_allow`` is
empty. So:

- **body keys**: only :data:`BODY_KEYS` (what Claude Code 2.1.330 sends, headless, planner and
  interactive, recorded against the scripted model, plus the Messages API's sampling keys);
  any other key is refused (400), ``mcp_servers`` and ``container`` among them;
- **tools**: client tools only (an ``input_schema``, no ``type`` or ``type: custom``); a server
  tool (``web_fetch_*``, ``web_search_*``, ``code_execution_*``, any typed tool) is refused (400);
- **``anthropic-beta``**: only :data:`BETAS` (recorded, plus two documented ones); others are
  stripped from the header (Bedrock: from the body's ``anthropic_beta``);
- **headers**: only :data:`HEADERS` (and ``x-stainless-*``); others are stripped.

Each list is extended by the person with settings (``GATEWAY_ALLOW_BODY_KEYS``,
``GATEWAY_ALLOW_BETAS``, ``GATEWAY_ALLOW_HEADERS``, ``GATEWAY_ALLOW_SERVER_TOOLS``) and per task
by its profile (the caller file's ``api_allow``). A refusal is logged in the task's egress log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import RequestRefused

BODY_KEYS = frozenset({
    # sent by Claude Code 2.1.330 (recorded)
    "model", "messages", "system", "max_tokens", "stream", "tools", "metadata", "thinking",
    "context_management", "output_config",
    # the Messages API's own, harmless (no fetch, no file, no server-side run)
    "tool_choice", "temperature", "top_p", "top_k", "stop_sequences", "service_tier",
    # Bedrock and Vertex bodies
    "anthropic_version", "anthropic_beta",
})
"""Body keys forwarded; any other key is refused."""

BETAS = frozenset({
    # sent by Claude Code 2.1.330 (recorded headless, with --json-schema, and interactive)
    "claude-code-20250219", "interleaved-thinking-2025-05-14", "context-management-2025-06-27",
    "per-turn-control-2026-07-01", "mid-conversation-tool-changes-2026-07-01",
    "thinking-token-count-2026-05-13", "advanced-tool-use-2025-11-20", "effort-2025-11-24",
    "thinking-display-updates-2026-08-18",
    # documented: the gateway's own OAuth beta, and the 1M-context window of `sonnet[1m]`
    "oauth-2025-04-20", "context-1m-2025-08-07",
})
"""``anthropic-beta`` values forwarded; others are stripped."""

HEADERS = frozenset({
    "content-type", "accept", "user-agent", "anthropic-version", "anthropic-beta", "x-app",
    "x-claude-code-session-id", "anthropic-dangerous-direct-browser-access",
})
"""Request headers forwarded (besides ``x-stainless-*``, the SDK's own); others are stripped."""

HEADER_PREFIXES = ("x-stainless-",)


@dataclass(frozen=True)
class Policy:
    """The allowlists in force for one request (defaults, settings and the caller's profile)."""

    body_keys: frozenset[str] = BODY_KEYS
    """Body keys forwarded."""
    betas: frozenset[str] = BETAS
    """Beta values forwarded."""
    headers: frozenset[str] = HEADERS
    """Header names forwarded (lower case)."""
    server_tools: frozenset[str] = frozenset()
    """Server tool types let through (e.g. ``web_search_20250305``); none by default."""

    def extended(self, extra: dict[str, list[str]]) -> Policy:
        """This policy with ``extra`` (``body_keys``, ``betas``, ``headers``, ``server_tools``)."""
        def more(name: str, base: frozenset[str]) -> frozenset[str]:
            return base | {v.strip().lower() if name == "headers" else v.strip()
                           for v in extra.get(name, []) if v.strip()}
        return Policy(more("body_keys", self.body_keys), more("betas", self.betas),
                      more("headers", self.headers), more("server_tools", self.server_tools))

    def check_body(self, payload: dict[str, Any]) -> None:
        """Refuse (400, :class:`EgressThroughApi`) a key or a tool outside the allowlist."""
        for key in payload:
            if key not in self.body_keys:
                raise EgressThroughApi(key, f"the gateway forwards no {key!r} in a request body "
                                       "(it is not on the body-key allowlist)")
        tools = payload.get("tools")
        for tool in tools if isinstance(tools, list) else []:
            kind = tool.get("type") if isinstance(tool, dict) else None
            if isinstance(kind, str) and kind in self.server_tools:
                continue
            if not isinstance(tool, dict) or "input_schema" not in tool or kind not in (None, "custom"):
                name = kind if isinstance(kind, str) else "a tool without input_schema"
                raise EgressThroughApi(str(name)[:100], f"the gateway forwards client tools only, "
                                       f"not the server tool {str(name)[:100]!r}")
        if isinstance(payload.get("anthropic_beta"), list):
            payload["anthropic_beta"] = self.filter_betas(payload["anthropic_beta"])

    def filter_betas(self, values: Iterable[Any]) -> list[str]:
        return [v for v in values if isinstance(v, str) and v.strip() in self.betas]

    def forward_headers(self, incoming: Iterable[tuple[str, str]]) -> dict[str, str]:
        """The caller's headers on the allowlist (lower-case names), betas filtered."""
        headers = {}
        for name, value in incoming:
            name = name.lower()
            if name in self.headers or name.startswith(HEADER_PREFIXES):
                headers[name] = value
        if "anthropic-beta" in headers:
            betas = self.filter_betas(headers["anthropic-beta"].split(","))
            headers["anthropic-beta"] = ",".join(b.strip() for b in betas)
            if not betas:
                del headers["anthropic-beta"]
        return headers


class EgressThroughApi(RequestRefused):
    """A request body asks for something that would make the model API reach out for the agent
    (a key or server tool outside the allowlist)."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(400, "invalid_request_error", message)
        self.what = what
        """The key or tool type refused."""
