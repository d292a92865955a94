"""The model API: a Starlette app serving Claude Code's requests on ``gateway/api.sock``.

The caller token comes as ``x-api-key``, Bearer, or as a path prefix ``/caller/<token>/`` on any
route (for Claude Code's Bedrock and Vertex modes, which send no credential: the base URL
carries it); the prefix is stripped before routing and never logged. Bedrock and Vertex routes
are in :mod:`gateway.cloud`.

``POST /v1/messages`` (streamed or not) and ``POST /v1/messages/count_tokens`` are forwarded
to the upstream with the real credential in place of the caller token, after these checks:
the token is known (else 401), its attempt holds a live claim (else 403), the body is a JSON
object within the size limit (else 400/413) asking for nothing off the allowlists of
:mod:`gateway.policy` (else 400, logged in the egress log); then the request waits for a fair
upstream slot (:mod:`gateway.slots`; else 529) and, for messages, what it could cost is held
against the task's and the fleet's budgets (:mod:`gateway.budgets`; else 403, ledger
``refused``). ``GET /health`` answers without a token; anything else is 404. Every answer the
gateway makes itself is Anthropic-shaped and carries ``x-should-retry: false`` (but the 529).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestration_protocol import Layout

from .budgets import BudgetRefusal, Budgets
from .callers import admit, api_token
from .cloud_credentials import AwsCredential
from .credentials import Credential, no_credential_message
from .egress_log import log_api_refusal
from .errors import RequestRefused, UpstreamUnreachable, error_body
from .exchange import Exchange
from .holds import HoldBook
from .policy import EgressThroughApi, Policy
from .prices import request_cost
from .relay import Relay
from .settings import GatewaySettings
from .upstream import Outgoing, Upstream, with_credential

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
    book: HoldBook
    """The ledger lines and the holds of requests in flight, under the volume-wide lock."""
    budgets: Budgets
    """Task and fleet budgets."""
    policy: Policy
    """What is forwarded (body keys, tools, betas, headers), before a caller's own additions."""
    bedrock: Upstream
    """The client to Bedrock, signing with the AWS credential (if any)."""
    vertex: Upstream
    """The client to Vertex, with its access token (if any)."""

    @classmethod
    def create(cls, settings: GatewaySettings, credential: Credential | None,
               aws: AwsCredential | None = None, vertex: Credential | None = None) -> Gateway:
        layout = Layout(settings.root)
        book = HoldBook(layout)
        region = aws.region if aws is not None else "us-east-1"
        bedrock_url = settings.bedrock_upstream or f"https://bedrock-runtime.{region}.amazonaws.com"
        policy = Policy().extended({"body_keys": settings.allow_body_keys,
                                    "betas": settings.allow_betas,
                                    "headers": settings.allow_headers,
                                    "server_tools": settings.allow_server_tools})
        return cls(settings, layout, Upstream(settings, credential), book,
                   Budgets(layout, book), policy, Upstream(settings, aws, bedrock_url),
                   Upstream(settings, vertex, settings.vertex_upstream))

    @property
    def upstreams(self) -> list[Upstream]:
        return [self.upstream, self.bedrock, self.vertex]


def refusal_response(error: RequestRefused) -> JSONResponse:
    """The Anthropic-shaped answer to a refused request."""
    headers = {"x-should-retry": "false"}
    if error.status in (429, 529):  # busy, not refused: Claude Code waits and tries again
        headers = {"x-should-retry": "true", "retry-after": "5"}
    return JSONResponse(error_body(error.error_type, error.message), status_code=error.status,
                        headers=headers)


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

    def headers(self, request: Request, upstream: Upstream, policy: Policy) -> dict[str, str]:
        assert upstream.credential is not None
        return with_credential(policy.forward_headers(request.headers.items()), upstream.credential)

    async def handle(self, request: Request) -> ASGIApp:
        """Admit, check and forward one request; the answer relays the upstream reply."""
        exchange = Exchange(
            self.gateway.budgets, request.url.path, self.metered, node=self.gateway.settings.node
        )
        try:
            return await self._forward(request, exchange)
        except RequestRefused as refused:
            exchange.caller = exchange.caller or refused.caller
            if isinstance(refused, EgressThroughApi) and exchange.caller is not None:
                await asyncio.to_thread(log_api_refusal, self.gateway.layout, exchange.caller,
                                        refused.what, refused.message)
            await asyncio.to_thread(exchange.finish, refused.status, "refused",
                                    error=refused.message)
            return self.refusal(refused)
        except UpstreamUnreachable as error:
            await asyncio.to_thread(exchange.finish, 502, "upstream_error", error=str(error))
            return self.refusal(RequestRefused(502, "api_error", str(error)))

    async def _forward(self, request: Request, exchange: Exchange) -> ASGIApp:
        gateway = self.gateway
        caller = exchange.caller = await asyncio.to_thread(
            admit, gateway.layout, api_token(request.headers), None, gateway.settings.node)
        body = await read_body(request, gateway.settings.max_body_bytes)
        payload = parse_payload(body) if self.json_body or body else {}
        if (model := self.model(request, payload)) is not None:
            exchange.model = model[:200]
        if gateway.settings.log_bodies:
            log.info("body of %s: %s", request.url.path,
                     body[:MAX_LOGGED_BODY].decode(errors="replace"))
        policy = gateway.policy.extended(caller.api_allow)
        betas_before = payload.get("anthropic_beta")
        policy.check_body(payload)
        if payload.get("anthropic_beta") != betas_before:
            body = json.dumps(payload).encode()
        upstream = self.upstream()
        if upstream.credential is None:
            raise RequestRefused(401, "authentication_error", self.no_credential())
        base_url, target = self.target(request)
        outgoing = Outgoing(request.method, target, self.headers(request, upstream, policy),
                            caller.task_id, f"{caller.task_id}#{caller.attempt}#{caller.worker_id}", base_url)

        async def ready() -> bytes:  # once a slot is free: others may have spent or hold
            if not self.metered:
                return body
            return await asyncio.to_thread(self._hold, exchange, payload, body)

        reply = await upstream.open(outgoing, ready)
        return Relay(exchange, reply, base_url or upstream.base_url)

    def _hold(self, exchange: Exchange, payload: dict[str, Any], body: bytes) -> bytes:
        """Hold what the request could cost (lowering its ``max_tokens`` to fit if need be);
        the body to send."""
        assert exchange.caller is not None
        settings = self.gateway.settings
        max_tokens = payload.get("max_tokens")
        max_tokens = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
        cost = request_cost(exchange.model, max_tokens, len(body), settings.bytes_per_token,
                            settings.min_output_tokens)
        try:
            exchange.hold, tokens = self.gateway.budgets.reserve(
                exchange.caller.task_id, exchange.caller.attempt, cost)
        except BudgetRefusal as refusal:
            raise RequestRefused(403, "permission_error",
                                 f"the gateway refuses this request: {refusal}",
                                 exchange.caller) from None
        exchange.max_tokens = tokens
        if tokens == max_tokens:
            return body
        log.info("task=%s max_tokens lowered from %s to %s to fit the budget",
                 exchange.caller.task_id, max_tokens, tokens)
        return json.dumps({**payload, "max_tokens": tokens}).encode()

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
