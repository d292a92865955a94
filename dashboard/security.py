"""Who may see the board, and what the browser may do with it.

:class:`TokenGate` lets a request through when it carries the dashboard's token (``Authorization:
Bearer``, the cookie the page gets, or ``?token=`` once, which sets the cookie and redirects to
the same URL without it, so the token does not stay in the address bar or the history). Without
a token (a dashboard on loopback) it accepts only loopback ``Host`` names, so a web page that
rebinds its own name to 127.0.0.1 cannot read the board. ``/healthz`` is always open.

:class:`SecurityHeaders` adds a strict Content-Security-Policy (scripts and styles only from the
dashboard itself, no inline script), ``nosniff`` and no framing: prompts, logs and patches are
written by agents that may be hostile, and the page renders them as text only.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "orchestrator_dashboard"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
OPEN_PATHS = frozenset({"/healthz"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header.split("]")[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class TokenGate:
    """Refuse requests without the token (or, with no token, from a foreign ``Host``)."""

    def __init__(
        self, app: ASGIApp, *, token: str | None, allowed_hosts: list[str] | None = None
    ) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        if self.token is None:
            host = _host_name(headers.get("host", ""))
            if self.allowed_hosts is not None and host not in self.allowed_hosts:
                return PlainTextResponse(
                    f"Host {host!r} is not this dashboard's; open it as http://127.0.0.1:PORT/.",
                    status_code=403,
                )
            return None
        query = dict(parse_qsl(scope.get("query_string", b"").decode(errors="replace")))
        given = query.get("token")
        if given is not None and self._matches(given):
            return self._set_cookie_and_redirect(scope, query)
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and self._matches(bearer[7:].strip()):
            return None
        cookie = SimpleCookie(headers.get("cookie", ""))
        if COOKIE in cookie and self._matches(cookie[COOKIE].value):
            return None
        sentence = (
            "This dashboard needs its token: open the URL it printed when it started "
            "(http://HOST:PORT/?token=...), or send 'Authorization: Bearer TOKEN'."
        )
        if scope["path"].startswith("/api/"):
            return JSONResponse({"error": sentence}, status_code=401)
        return PlainTextResponse(sentence, status_code=401)

    def _matches(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _set_cookie_and_redirect(self, scope: Scope, query: dict[str, str]) -> Response:
        query.pop("token", None)
        target = scope["path"] + (f"?{urlencode(query)}" if query else "")
        response = RedirectResponse(target, status_code=303)
        assert self.token is not None
        response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
        return response


class SecurityHeaders:
    """Add the CSP and friends to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
