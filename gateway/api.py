"""The model API: a Starlette app serving Claude Code's requests on ``gateway/api.sock``.

``POST /v1/messages`` (streamed or not) and ``POST /v1/messages/count_tokens`` are forwarded
to the upstream with the real credential in place of the caller token, after four checks:
the token is known (else 401), its attempt holds a live claim (else 403), the body is a JSON
object within the size limit (else 400/413), and, for messages, no budget is spent (else 403,
ledger ``refused``). ``GET /health`` answers without a token; anything else is 404. Every
answer the gateway makes itself is Anthropic-shaped and carries ``x-should-retry: false``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from orchestration_protocol import Layout
from orchestration_protocol.gateway import GatewayCaller

from .budgets import Budgets
from .callers import admit, api_token
from .credentials import Credential, no_credential_message
from .errors import RequestRefused, UpstreamUnreachable, error_body
from .exchange import Exchange
from .ledger import Ledger
from .relay import Relay
from .settings import GatewaySettings
from .upstream import Upstream, forward_headers

log = logging.getLogger("gateway")
MAX_LOGGED_BODY = 64 * 1024


@dataclass
class Gateway:
    """Everything the model API needs, made once per process."""

    settings: GatewaySettings
    """The resolved settings."""
    layout: Layout
    """The orchestration root."""
    upstream: Upstream
    """The client to the model endpoint, holding the credential."""
    ledger: Ledger
    """Where requests are recorded, with running totals."""
    budgets: Budgets
    """Task and fleet budgets."""

    @classmethod
    def create(cls, settings: GatewaySettings, credential: Credential | None) -> Gateway:
        layout = Layout(settings.root)
        ledger = Ledger(layout)
        return cls(settings, layout, Upstream(settings, credential), ledger,
                   Budgets(layout, ledger))


def refusal_response(error: RequestRefused) -> JSONResponse:
    """The Anthropic-shaped answer to a refused request."""
    return JSONResponse(error_body(error.error_type, error.message), status_code=error.status,
                        headers={"x-should-retry": "false"})


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) one over ``limit`` bytes before reading it all."""
    too_large = RequestRefused(413, "request_too_large",
                               f"the request body is larger than the gateway's {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def parse_payload(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body (400 otherwise)."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestRefused(400, "invalid_request_error",
                             f"the request body is not valid JSON ({error})") from error
    if not isinstance(payload, dict):
        raise RequestRefused(400, "invalid_request_error", "the request body is not a JSON object")
    return payload


class ModelEndpoint:
    """``/v1/messages`` (metered) or ``/v1/messages/count_tokens`` (free, not in the ledger)."""

    def __init__(self, gateway: Gateway, metered: bool) -> None:
        self.gateway = gateway
        self.metered = metered

    async def handle(self, request: Request) -> ASGIApp:
        """Admit, check and forward one request; the answer relays the upstream reply."""
        exchange = Exchange(self.gateway.ledger, request.url.path, self.metered)
        try:
            exchange.caller = await asyncio.to_thread(
                admit, self.gateway.layout, api_token(request.headers))
            body = await read_body(request, self.gateway.settings.max_body_bytes)
            payload = parse_payload(body)
            if isinstance(payload.get("model"), str):
                exchange.model = payload["model"][:200]
            if self.gateway.settings.log_bodies:
                text = body[:MAX_LOGGED_BODY].decode(errors="replace")
                log.info("body of %s: %s", request.url.path, text)
            caller = exchange.caller
            if self.metered:
                await self._check_budget(caller)
            upstream = self.gateway.upstream
            if upstream.credential is None:
                raise RequestRefused(401, "authentication_error", no_credential_message())
            headers = forward_headers(request.headers.items(), upstream.credential)

            async def ready() -> None:  # again once a slot is free: others may have spent
                if self.metered:
                    await self._check_budget(caller)

            reply = await upstream.open("POST", _target(request), headers, body, ready)
        except RequestRefused as refused:
            exchange.caller = exchange.caller or refused.caller
            exchange.finish(refused.status, "refused", error=refused.message)
            return refusal_response(refused)
        except UpstreamUnreachable as error:
            exchange.finish(502, "upstream_error", error=str(error))
            return refusal_response(RequestRefused(502, "api_error", str(error)))
        return Relay(exchange, reply, self.gateway.settings.upstream)

    async def _check_budget(self, caller: GatewayCaller) -> None:
        refusal = await asyncio.to_thread(self.gateway.budgets.refusal, caller.task_id)
        if refusal is not None:
            raise RequestRefused(403, "permission_error",
                                 f"the gateway refuses this request: {refusal}", caller)


def _target(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    kind = "not_found_error" if status == 404 else "invalid_request_error"
    message = f"the gateway serves no {request.method} {request.url.path}"
    log.info("task=- %s %s refused (no such route)", request.url.path, status)
    return JSONResponse(error_body(kind, message), status_code=status,
                        headers={"x-should-retry": "false"})


def build_app(gateway: Gateway) -> Starlette:
    """The ASGI app of the model API."""
    routes = [
        Route("/v1/messages", ModelEndpoint(gateway, metered=True).handle, methods=["POST"]),
        Route("/v1/messages/count_tokens", ModelEndpoint(gateway, metered=False).handle,
              methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
