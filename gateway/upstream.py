"""The way to the model endpoint: one HTTP client, the credential, the concurrency cap, and
waiting out 429/529.

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
    _release: asyncio.Semaphore | None = field(default=None, repr=False)

    def headers(self) -> list[tuple[str, str]]:
        """The response headers fit to pass on to the caller."""
        return [(k, v) for k, v in self.response.headers.items() if k.lower() not in DROP_RESPONSE]

    async def aclose(self) -> None:
        try:
            await self.response.aclose()
        finally:
            if self._release is not None:
                self._release.release()
                self._release = None


def forward_headers(incoming: list[tuple[str, str]], credential: UpstreamCredential) -> dict[str, str]:
    """The headers sent upstream: the caller's harmless ones plus the real credential."""
    headers = {k.lower(): v for k, v in incoming if k.lower() not in DROP_REQUEST}
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
        self.slots = asyncio.Semaphore(settings.concurrency)
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

    async def open(self, method: str, target: str, headers: dict[str, str], body: bytes,
                   ready: Callable[[], Awaitable[None]] | None = None,
                   base_url: str | None = None) -> UpstreamReply:
        """Send the request (``target`` is path and query, appended to ``base_url``, default
        this upstream's) and return the reply once its head arrived, having waited out 429/529
        within the settings' bounds. ``ready`` runs once a slot is free, just before sending
        (the budget check: requests that waited for a slot see what the ones before them
        cost); what it raises ends the request unsent. The credential signs each send."""
        await self.slots.acquire()
        try:
            if ready is not None:
                await ready()
            return await self._open(method, (base_url or self.base_url) + target, headers, body)
        except BaseException:
            self.slots.release()
            raise

    async def _open(self, method: str, url: str, headers: dict[str, str], body: bytes) -> UpstreamReply:
        retries, waited = 0, 0.0
        while True:
            response = await self._send(method, url, headers, body)
            if response.status_code not in RETRY_STATUSES or retries >= self.settings.max_retries:
                return UpstreamReply(response, retries, self.slots)
            wait = retry_wait(response, retries, self.settings.retry_base_s)
            if waited + wait > self.settings.retry_total_s:
                return UpstreamReply(response, retries, self.slots)
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
