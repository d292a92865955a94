"""The gateway's Prometheus metrics (issue 17): request latency, upstream errors, refusals.

Served over HTTP only when ``$ORCHESTRATOR_GATEWAY_METRICS`` names where (``PORT`` or
``HOST:PORT``; the host defaults to ``127.0.0.1``), never on the API socket: workers reach that
one, and the figures are the whole fleet's. In the Compose stack the gateway is on the
project's network, which no worker joins, so ``0.0.0.0:9464`` lets the project's Prometheus in.

- ``orchestrator_gateway_request_duration_seconds{path,outcome}``: a histogram of each model
  request's time from arrival to its last byte (``outcome``: ok, refused, upstream_error,
  caller_gone);
- ``orchestrator_gateway_upstream_errors_total{status}``: replies of the model endpoint at 400
  or above, and 502 for one it could not reach;
- ``orchestrator_gateway_requests_refused_total{reason}``: requests the gateway answered itself
  (unauthenticated, no_claim, budget, too_large, bad_request, other).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from .errors import BadSetting

METRICS_ENV = "ORCHESTRATOR_GATEWAY_METRICS"
REGISTRY = CollectorRegistry(auto_describe=True)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

REQUEST_SECONDS = Histogram(
    "orchestrator_gateway_request_duration_seconds",
    "Model requests from arrival to their last byte, by endpoint and outcome.",
    ["path", "outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    "orchestrator_gateway_upstream_errors",
    "Replies of the model endpoint with an error status (502: it could not be reached).",
    ["status"],
    registry=REGISTRY,
)
REFUSED = Counter(
    "orchestrator_gateway_requests_refused",
    "Requests the gateway refused itself, by reason.",
    ["reason"],
    registry=REGISTRY,
)
KNOWN_PATHS = ("/v1/messages", "/v1/messages/count_tokens")

log = logging.getLogger("gateway")


def path_label(path: str) -> str:
    """A bounded label for an endpoint: the Anthropic paths as they are, Bedrock and Vertex by
    name (their paths carry model names), anything else ``other``."""
    if path in KNOWN_PATHS:
        return path
    if path.startswith("/model/"):
        return "bedrock"
    if path.startswith(("/projects/", "/v1/projects/")):
        return "vertex"
    return "other"


def refusal_reason(status: int, error: str | None) -> str:
    """Why the gateway refused a request, from the status and message it answered with."""
    if status == 401:
        return "unauthenticated"
    if status == 403:
        return "budget" if error and "budget" in error else "no_claim"
    return {413: "too_large", 400: "bad_request"}.get(status, "other")


def exchange_ended(path: str, status: int, outcome: str, error: str | None, seconds: float) -> None:
    """Count one model request that ended (called by :class:`gateway.exchange.Exchange`)."""
    REQUEST_SECONDS.labels(path_label(path), outcome).observe(max(0.0, seconds))
    if outcome == "refused":
        REFUSED.labels(refusal_reason(status, error)).inc()
    elif outcome == "upstream_error":
        UPSTREAM_ERRORS.labels(str(status)).inc()


def metrics_address(value: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` as an address; BadSetting naming the variable otherwise."""
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadSetting(
            f"${METRICS_ENV}={value!r} is not PORT or HOST:PORT; give one such as 9464 or "
            "0.0.0.0:9464"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


def serve_metrics_from_env(env: Mapping[str, str]) -> None:
    """Serve ``/metrics`` where ``$ORCHESTRATOR_GATEWAY_METRICS`` in ``env`` says (nothing when
    unset); BadSetting when it is malformed or the address cannot be bound."""
    value = env.get(METRICS_ENV, "").strip()
    if not value:
        return
    host, port = metrics_address(value)
    try:
        start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as error:
        raise BadSetting(
            f"cannot serve metrics on {host}:{port} ({error.strerror}); give another "
            f"${METRICS_ENV} or unset it"
        ) from None
    log.info("metrics on http://%s:%d/metrics", host, port)
