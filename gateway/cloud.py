"""Bedrock and Vertex routes: what Claude Code sends with ``CLAUDE_CODE_USE_BEDROCK`` /
``CLAUDE_CODE_USE_VERTEX`` and ``CLAUDE_CODE_SKIP_*_AUTH``, to a base URL that carries the
caller token (``http://127.0.0.1:<port>/caller/<token>``; see :class:`gateway.api.CallerPrefix`).

Claude Code 2.1.330 sends (checked against the binary), below its base URL's path:

- Bedrock: ``POST /model/<model id>/invoke-with-response-stream`` (``/invoke`` when not
  streamed), the model only in the path, the body an Anthropic Messages body with
  ``anthropic_version: bedrock-2023-05-31`` and ``anthropic_beta`` in it; and once at start
  ``GET /inference-profiles?type=SYSTEM_DEFINED`` (Bedrock's control plane, from the AWS SDK;
  a failure there does not stop it). Forwarded to ``bedrock-runtime.<region>.amazonaws.com``
  (the profiles to ``bedrock.<region>.amazonaws.com``), signed with SigV4.
- Vertex: ``POST /projects/<p>/locations/<region>/publishers/anthropic/models/<model>:streamRawPredict``
  (``:rawPredict`` unstreamed; ``.../models/count-tokens:rawPredict`` to count), body with
  ``anthropic_version: vertex-2023-10-16``. Forwarded to ``<region>-aiplatform.googleapis.com``
  under ``/v1`` (a base URL ending in ``/v1`` works too) with the OAuth token as Bearer.

Checks (lease, budget, body), backpressure and error answers are those of ``/v1/messages``,
but for one status: in Bedrock mode Claude Code 2.1.330 retries a 403 for minutes whatever
``x-should-retry`` says (seen: 7 requests in 25 s), while it gives up at once on a 409 and shows
``API Error: 409 <message>``; so a Bedrock refusal that would be 403 (lease, budget) is a 409.
(In Vertex mode a 403 ends at once; a 401 in either mode is shown behind "AWS/Google Cloud
authentication failed", which is right for an unknown token.)
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .api import Gateway, ModelEndpoint, _target, refusal_response
from .cloud_credentials import NO_AWS_CREDENTIAL, NO_VERTEX_CREDENTIAL
from .errors import RequestRefused
from .policy import Policy
from .upstream import Upstream, with_credential

BEDROCK_HEADERS = frozenset({"content-type", "accept"})
"""Caller headers forwarded to Bedrock (and signed), besides ``x-amzn-bedrock-*``."""
VERTEX_ACTIONS = frozenset({"rawPredict", "streamRawPredict"})
REGION = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
VERTEX_PREFIX = "/projects/{project}/locations/{region}/publishers/anthropic/models/{model_action}"


def _plain_path(request: Request) -> None:
    """Refuse a path with a ``.`` or ``..`` segment (the upstream client would resolve it and
    the signed request would reach another API path than the route served)."""
    raw = request.scope.get("raw_path") or b""
    for path in (request.url.path, unquote(raw.decode("latin-1"))):
        if any(part in (".", "..") for part in path.split("/")):
            raise RequestRefused(400, "invalid_request_error",
                                 "the request path has a . or .. segment")


class BedrockEndpoint(ModelEndpoint):
    """``/model/{model_id}/invoke[-with-response-stream]`` (metered)."""

    def upstream(self) -> Upstream:
        return self.gateway.bedrock

    def no_credential(self) -> str:
        return NO_AWS_CREDENTIAL

    def refusal(self, refused: RequestRefused) -> Response:
        if refused.status == 403:  # Claude Code retries a Bedrock 403 for minutes
            refused = RequestRefused(409, refused.error_type, refused.message, refused.caller)
        return refusal_response(refused)

    def model(self, request: Request, payload: dict[str, Any]) -> str | None:
        return str(request.path_params.get("model_id") or "") or None

    def target(self, request: Request) -> tuple[str | None, str]:
        _plain_path(request)
        raw = request.scope.get("raw_path") or request.url.path.encode()
        query = request.url.query
        return None, raw.decode("latin-1") + (f"?{query}" if query else "")

    def headers(self, request: Request, upstream: Upstream, policy: Policy) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items()
                   if k in BEDROCK_HEADERS or k.startswith("x-amzn-bedrock-")}
        headers["accept-encoding"] = "identity"
        return headers


class InferenceProfiles(BedrockEndpoint):
    """``GET /inference-profiles``: Bedrock's control plane, unmetered."""

    json_body = False

    def model(self, request: Request, payload: dict[str, Any]) -> str | None:
        return None

    def target(self, request: Request) -> tuple[str | None, str]:
        settings = self.gateway.settings
        credential = self.gateway.bedrock.credential
        region = getattr(credential, "region", "us-east-1")
        base = settings.bedrock_upstream or f"https://bedrock.{region}.amazonaws.com"
        return base, _target(request)


class VertexEndpoint(ModelEndpoint):
    """``[/v1]/projects/.../publishers/anthropic/models/{model}:{action}``."""

    def upstream(self) -> Upstream:
        return self.gateway.vertex

    def no_credential(self) -> str:
        return NO_VERTEX_CREDENTIAL

    def model(self, request: Request, payload: dict[str, Any]) -> str | None:
        model, _, action = str(request.path_params["model_action"]).rpartition(":")
        if action not in VERTEX_ACTIONS or not model:
            raise RequestRefused(404, "not_found_error",
                                 f"the gateway serves no Vertex action {action!r}")
        return model

    def target(self, request: Request) -> tuple[str | None, str]:
        _plain_path(request)
        region = str(request.path_params["region"])
        if not REGION.match(region) or len(region) > 40:
            raise RequestRefused(400, "invalid_request_error",
                                 "the Vertex region in the path is not a region name")
        base = self.gateway.settings.vertex_upstream or (
            "https://aiplatform.googleapis.com" if region == "global"
            else f"https://{region}-aiplatform.googleapis.com")
        path = _target(request)
        return base, path if path.startswith("/v1/") else "/v1" + path

    def headers(self, request: Request, upstream: Upstream, policy: Policy) -> dict[str, str]:
        assert upstream.credential is not None
        return with_credential(policy.forward_headers(request.headers.items()), upstream.credential)


class _VertexRoute:
    """Vertex's path, metered unless it is ``count-tokens``."""

    def __init__(self, gateway: Gateway) -> None:
        self.metered = VertexEndpoint(gateway, metered=True)
        self.free = VertexEndpoint(gateway, metered=False)

    async def handle(self, request: Request) -> Any:
        model = str(request.path_params["model_action"]).rpartition(":")[0]
        endpoint = self.free if model == "count-tokens" else self.metered
        return await endpoint.handle(request)


def cloud_routes(gateway: Gateway) -> list[Route]:
    """The Bedrock and Vertex routes of the model API."""
    bedrock = BedrockEndpoint(gateway, metered=True).handle
    vertex = _VertexRoute(gateway).handle
    return [
        Route("/model/{model_id:path}/invoke", bedrock, methods=["POST"]),
        Route("/model/{model_id:path}/invoke-with-response-stream", bedrock, methods=["POST"]),
        Route("/inference-profiles", InferenceProfiles(gateway, metered=False).handle,
              methods=["GET"]),
        Route(VERTEX_PREFIX, vertex, methods=["POST"]),
        Route("/v1" + VERTEX_PREFIX, vertex, methods=["POST"]),
    ]
