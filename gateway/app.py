"""The model API's ASGI app: the Anthropic routes (:mod:`gateway.api`) and the Bedrock and
Vertex ones (:mod:`gateway.cloud`), behind the caller-prefix middleware."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp

from .api import CallerPrefix, Gateway, ModelEndpoint, health, not_found
from .cloud import cloud_routes


def build_app(gateway: Gateway) -> ASGIApp:
    """The ASGI app of the model API."""
    routes = [
        Route("/v1/messages", ModelEndpoint(gateway, metered=True).handle, methods=["POST"]),
        Route("/v1/messages/count_tokens", ModelEndpoint(gateway, metered=False).handle,
              methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        *cloud_routes(gateway),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    return CallerPrefix(app)
