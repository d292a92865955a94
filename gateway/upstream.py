"""The way to the model endpoint: one HTTP client, the credential, the fair upstream slots
(:mod:`gateway.slots`), and waiting out 429/529.

:meth:`Upstream.open` returns a reply whose body has not been read yet, so the caller can relay
it as it arrives; retries happen only before that, while nothing has gone to the caller.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from .credentials import UpstreamCredential
from .errors import UpstreamUnreachable
from .settings import GatewaySettings
from .slots import FairSlots

RETRY_STATUSES = frozenset({429, 529})
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
DROP_REQUEST = HOP_BY_HOP | {
    "host", "content-length", "x-api-key", "authorization", "cookie", "accept-encoding",
    "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip",
}
"""Caller headers never forwarded: hop-by-hop ones, the caller's own auth, and framing."""
DROP_RESPONSE = HOP_BY_HOP | {"content-length", "content-encoding", "set-cookie", "server", "date"}


@dataclass
class UpstreamReply:
    """An upstream response whose body is still to be read; close it with :meth:`aclose`."""

    response: httpx.Response
    """The response, opened with ``stream=True``."""
    retries: int
    """How many 429/529 answers were waited out before this one."""
    _release: Callable[[], None] | None = field(default=None, repr=False)

    def headers(self) -> list[tuple[str, str]]:
        """The response headers fit to pass on to the caller."""
        return [(k, v) for k, v in self.response.headers.items() if k.lower() not in DROP_RESPONSE]

    async def aclose(self) -> None:
        try:
            await self.response.aclose()
        finally:
            if self._release is not None:
                self._release()
                self._release = None


@dataclass(frozen=True)
class Outgoing:
    """One request to send upstream, but for its body (the budget hold may change it)."""

    method: str
    """The HTTP method."""
    target: str
    """Path and query, appended to ``base_url``."""
    headers: dict[str, str]
    """The headers to send (the credential in them; a signature is added per send)."""
    task_id: str
    """The task whose slot it takes."""
    caller: str
    """The caller (attempt) whose slot it takes."""
    base_url: str | None = None
    """Where to send it; None: the upstream's own base URL."""


def with_credential(headers: dict[str, str], credential: UpstreamCredential) -> dict[str, str]:
    """``headers`` (the caller's, on the allowlist) plus the real credential."""
    headers = {k: v for k, v in headers.items() if k not in DROP_REQUEST}
    headers["accept-encoding"] = "identity"  # relay bytes as they are; read usage from them
    credential.apply(headers)
    return headers


def retry_wait(response: httpx.Response, retry: int, base_s: float) -> float:
    """Seconds to wait before retry number ``retry`` (0-based): ``retry-after`` if given."""
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        if when is not None:
            return max(0.0, when.timestamp() - time.time())
    return float(base_s * (2**retry))


class Upstream:
    """The HTTP client to the model endpoint, shared by every request."""

    def __init__(self, settings: GatewaySettings, credential: UpstreamCredential | None,
                 base_url: str | None = None) -> None:
        self.settings = settings
        self.base_url = base_url or settings.upstream
        self.credential = credential
        self.slots = FairSlots(settings.concurrency, settings.task_concurrency,
                               settings.caller_concurrency, settings.queue_timeout_s)
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s, read=settings.read_timeout_s,
            write=settings.read_timeout_s, pool=settings.connect_timeout_s,
        )
        limits = httpx.Limits(max_connections=settings.concurrency * 2,
                              max_keepalive_connections=settings.concurrency)
        # trust_env=False: the gateway's own HTTPS_PROXY or netrc never applies to the model API
        self.client = httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def open(self, request: Outgoing, ready: Callable[[], Awaitable[bytes]]) -> UpstreamReply:
        """Send the request and return the reply once its head arrived, having waited out
        429/529 within the settings' bounds. ``ready`` runs once the caller's task has a slot,
        just before sending, and gives the body to send (the budget hold: requests that waited
        for a slot see what the ones before them hold); what it raises ends the request unsent.
        The credential signs each send."""
        await self.slots.acquire(request.task_id, request.caller)

        def release() -> None:
            self.slots.release(request.task_id, request.caller)

        try:
            body = await ready()
            url = (request.base_url or self.base_url) + request.target
            return await self._open(request.method, url, request.headers, body, release)
        except BaseException:
            release()
            raise

    async def _open(self, method: str, url: str, headers: dict[str, str], body: bytes,
                    release: Callable[[], None]) -> UpstreamReply:
        retries, waited = 0, 0.0
        while True:
            response = await self._send(method, url, headers, body)
            if response.status_code not in RETRY_STATUSES or retries >= self.settings.max_retries:
                return UpstreamReply(response, retries, release)
            wait = retry_wait(response, retries, self.settings.retry_base_s)
            if waited + wait > self.settings.retry_total_s:
                return UpstreamReply(response, retries, release)
            await response.aclose()
            await asyncio.sleep(wait)
            retries, waited = retries + 1, waited + wait

    async def _send(self, method: str, url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        if self.credential is not None:
            headers = self.credential.sign(method, url, dict(headers), body)
        request = self.client.build_request(method, url, headers=headers, content=body)
        try:
            return await self.client.send(request, stream=True)
        except httpx.TransportError as error:
            reason = str(error) or type(error).__name__
            raise UpstreamUnreachable(
                f"the model endpoint {_origin(url)} cannot be reached ({reason})"
            ) from error


def _origin(url: str) -> str:
    parts = httpx.URL(url)
    return f"{parts.scheme}://{parts.netloc.decode()}"
