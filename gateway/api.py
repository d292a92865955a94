"""The model API: a Starlette app serving Claude Code's requests on ``gateway/api.sock``.

The caller token comes as ``x-api-key``, Bearer, or as a path prefix ``/caller/<token>/`` on any
route (for Claude Code's Bedrock and Vertex modes, which send no credential: the base URL
carries it); the prefix is stripped before routing and never logged. Bedrock and Vertex routes
are in :mod:`gateway.cloud`.

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
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestration_protocol import Layout
from orchestration_protocol.gateway import GatewayCaller

from .budgets import Budgets
from .callers import admit, api_token
from .cloud_credentials import AwsCredential
from .credentials import Credential, no_credential_message
from .errors import RequestRefused, UpstreamUnreachable, error_body
from .exchange import Exchange
from .ledger import Ledger
from .relay import Relay
from .settings import GatewaySettings
from .upstream import Upstream, forward_headers

log = logging.getLogger("gateway")
MAX_LOGGED_BODY = 64 * 1024
CALLER_PREFIX = "/caller/"


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
    bedrock: Upstream
    """The client to Bedrock, signing with the AWS credential (if any)."""
    vertex: Upstream
    """The client to Vertex, with its access token (if any)."""

    @classmethod
    def create(cls, settings: GatewaySettings, credential: Credential | None,
               aws: AwsCredential | None = None, vertex: Credential | None = None) -> Gateway:
        layout = Layout(settings.root)
        ledger = Ledger(layout, settings.node)
        region = aws.region if aws is not None else "us-east-1"
        bedrock_url = settings.bedrock_upstream or f"https://bedrock-runtime.{region}.amazonaws.com"
        return cls(settings, layout, Upstream(settings, credential), ledger,
                   Budgets(layout, ledger), Upstream(settings, aws, bedrock_url),
                   Upstream(settings, vertex, settings.vertex_upstream))

    @property
    def upstreams(self) -> list[Upstream]:
        return [self.upstream, self.bedrock, self.vertex]


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
    """``/v1/messages`` (metered) or ``/v1/messages/count_tokens`` (free, not in the ledger).
    Subclasses (:mod:`gateway.cloud`) change where a request goes and how it is presented."""

    json_body = True
    """Whether the request carries a JSON object (else: no body at all)."""

    def __init__(self, gateway: Gateway, metered: bool) -> None:
        self.gateway = gateway
        self.metered = metered

    def upstream(self) -> Upstream:
        """The client (and credential) this route forwards with."""
        return self.gateway.upstream

    def no_credential(self) -> str:
        return no_credential_message()

    def model(self, request: Request, payload: dict[str, Any]) -> str | None:
        """The model the request names."""
        model = payload.get("model")
        return model if isinstance(model, str) else None

    def target(self, request: Request) -> tuple[str | None, str]:
        """Base URL (None: the upstream's) and path with query to forward to."""
        return None, _target(request)

    def refusal(self, refused: RequestRefused) -> Response:
        """The answer to a request the gateway refuses."""
        return refusal_response(refused)

    def headers(self, request: Request, upstream: Upstream) -> dict[str, str]:
        assert upstream.credential is not None
        return forward_headers(request.headers.items(), upstream.credential)

    async def handle(self, request: Request) -> ASGIApp:
        """Admit, check and forward one request; the answer relays the upstream reply."""
        exchange = Exchange(self.gateway.ledger, request.url.path, self.metered)
        try:
            exchange.caller = await asyncio.to_thread(
                admit, self.gateway.layout, api_token(request.headers), None,
                self.gateway.settings.node)
            body = await read_body(request, self.gateway.settings.max_body_bytes)
            payload = parse_payload(body) if self.json_body or body else {}
            if (model := self.model(request, payload)) is not None:
                exchange.model = model[:200]
            if self.gateway.settings.log_bodies:
                text = body[:MAX_LOGGED_BODY].decode(errors="replace")
                log.info("body of %s: %s", request.url.path, text)
            caller = exchange.caller
            if self.metered:
                await self._check_budget(caller)
            upstream = self.upstream()
            if upstream.credential is None:
                raise RequestRefused(401, "authentication_error", self.no_credential())
            base_url, target = self.target(request)
            headers = self.headers(request, upstream)

            async def ready() -> None:  # again once a slot is free: others may have spent
                if self.metered:
                    await self._check_budget(caller)

            reply = await upstream.open(request.method, target, headers, body, ready, base_url)
        except RequestRefused as refused:
            exchange.caller = exchange.caller or refused.caller
            exchange.finish(refused.status, "refused", error=refused.message)
            return self.refusal(refused)
        except UpstreamUnreachable as error:
            exchange.finish(502, "upstream_error", error=str(error))
            return self.refusal(RequestRefused(502, "api_error", str(error)))
        return Relay(exchange, reply, base_url or upstream.base_url)

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


class CallerPrefix:
    """ASGI middleware: a path ``/caller/<token>/rest`` becomes ``/rest`` with the token as
    ``x-api-key`` (any other ``x-api-key`` or ``authorization`` header is dropped)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(CALLER_PREFIX):
            token, _, rest = path[len(CALLER_PREFIX):].partition("/")
            raw: bytes = scope.get("raw_path") or path.encode()
            raw_rest = raw[len(CALLER_PREFIX):].partition(b"/")[2]
            headers = [(k, v) for k, v in scope["headers"]
                       if k.lower() not in (b"x-api-key", b"authorization")]
            headers.append((b"x-api-key", token.encode("latin-1", errors="replace")))
            scope = {**scope, "path": "/" + rest, "raw_path": b"/" + raw_rest, "headers": headers}
        await self.app(scope, receive, send)


def build_app(gateway: Gateway) -> ASGIApp:
    """The ASGI app of the model API."""
    from .cloud import cloud_routes

    routes = [
        Route("/v1/messages", ModelEndpoint(gateway, metered=True).handle, methods=["POST"]),
        Route("/v1/messages/count_tokens", ModelEndpoint(gateway, metered=False).handle,
              methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        *cloud_routes(gateway),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    return CallerPrefix(app)
