"""Relaying an upstream reply to the caller as it arrives, metering its usage on the way.

An ASGI callable (Starlette runs whatever an endpoint returns). Nothing is buffered beyond one
chunk; if the caller goes away the upstream reply is closed at once (no tokens are read for
nobody); if the upstream breaks off mid-stream the caller gets an SSE ``error`` event. When the
reply ends, the :class:`~gateway.exchange.Exchange` writes its ledger and log lines.
"""

from __future__ import annotations

import anyio
import httpx
from starlette.types import Receive, Scope, Send

from .eventstream import EVENTSTREAM_TYPE, EventStreamMeter
from .exchange import Exchange
from .upstream import UpstreamReply
from .usage import UsageMeter


class Relay:
    """The response to a forwarded request."""

    def __init__(self, exchange: Exchange, reply: UpstreamReply, upstream_url: str) -> None:
        self.exchange = exchange
        self.reply = reply
        self.upstream_url = upstream_url
        content_type = reply.response.headers.get("content-type", "")
        self.meter: UsageMeter | EventStreamMeter
        if content_type.startswith(EVENTSTREAM_TYPE):
            self.meter = EventStreamMeter()
        else:
            self.meter = UsageMeter(streamed=content_type.startswith("text/event-stream"))
        self.error: str | None = None
        self.caller_gone = False
        self.complete = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = self.reply.response.status_code
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_caller, receive, group.cancel_scope)
                await self._relay(send)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.reply.aclose()
                self._finish(status)

    async def _watch_caller(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if self.complete:  # the server reports a finished response as a disconnect too
            return
        self.caller_gone = True
        self.error = "the caller went away before the reply ended"
        scope.cancel()

    async def _relay(self, send: Send) -> None:
        response = self.reply.response
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.reply.headers()]
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": headers})
        try:
            async for chunk in response.aiter_raw():
                self.meter.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.TransportError as error:
            reason = str(error) or type(error).__name__
            self.error = f"the model endpoint {self.upstream_url} broke off the reply ({reason})"
            notice = self.meter.broken_off(self.error)
            if notice is not None:
                await send({"type": "http.response.body", "body": notice, "more_body": True})
        self.complete = True
        self._finish(response.status_code)  # the ledger has the line before the caller has the end
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _finish(self, status: int) -> None:
        if self.exchange.finished:
            return
        self.meter.finish()
        if self.exchange.model is None:
            self.exchange.model = self.meter.model
        failed = status >= 400 or self.meter.error is not None or (
            self.error is not None and not self.caller_gone
        )
        error = self.error or (self.meter.error if failed else None)
        if status >= 400 and error is None:
            error = f"the model endpoint answered {status}"
        outcome = "upstream_error" if failed else "caller_gone" if self.caller_gone else "ok"
        unsettled = self.caller_gone and status < 400 and not self.meter.settled
        self.exchange.finish(status, outcome, self.meter.usage, self.reply.retries, error,
                             unsettled=unsettled)

