"""The egress proxy on ``gateway/proxy.sock``: a worker's only way to the outside.

Small and strict, on asyncio streams (ASGI cannot tunnel). One request per connection:

- ``CONNECT host:port HTTP/1.1`` opens a tunnel (for HTTPS; the proxy never sees inside);
- ``GET http://host[:port]/path HTTP/1.1`` (absolute form) is sent on as origin form with
  ``Connection: close``, and the reply relayed.

The caller proves who it is with ``Proxy-Authorization: Basic base64(<task>:<token>)``
(missing or unknown: 407); its attempt must hold a live claim (else 403), and the host must be
on its ``egress_allow`` (else 403, with a body naming the host and the fix). Every connection
whose task is known, allowed or refused, is appended to ``egress/<task>.jsonl``; an unknown
caller is logged on stderr only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from orchestration_protocol import Layout, utc_now
from orchestration_protocol.gateway import (
    EgressEntry,
    GatewayCaller,
    append_line,
    domain_allowed,
    egress_file,
)

from .callers import admit, proxy_credentials
from .errors import EgressRefused, RequestRefused
from .settings import GatewaySettings

log = logging.getLogger("gateway.egress")
METHOD = re.compile(r"^[A-Za-z]{1,20}$")
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Bytes a request head never holds (tab is allowed in header values); a bare LF or CR would
split a log line, or the request sent on, in two."""
HOST_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
DROP_HEADERS = frozenset({
    "proxy-authorization", "proxy-connection", "connection", "keep-alive", "te", "trailer",
    "upgrade", "host",
})
MAX_HEADERS = 100
CHUNK = 64 * 1024


class BadRequest(ValueError):
    """The request head cannot be served (400)."""


@dataclass
class Head:
    """A parsed request head."""

    method: str
    target: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


def parse_head(data: bytes) -> Head:
    """Request line and headers (400 on anything unusual: folded lines, no colon, too many)."""
    lines = data.decode("latin-1").split("\r\n")
    if any(CONTROL.search(line) for line in lines):
        raise BadRequest("a control character in the request head")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not METHOD.match(parts[0]):
        raise BadRequest("malformed request line")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise BadRequest("malformed header line")
        headers.append((name, value.strip()))
    if len(headers) > MAX_HEADERS:
        raise BadRequest("too many headers")
    return Head(parts[0].upper(), parts[1], headers)


def parse_target(head: Head) -> tuple[str, int, str]:
    """``(host, port, origin-form path)`` of the request; path is empty for CONNECT."""
    if head.method == "CONNECT":
        host, sep, port = head.target.rpartition(":")
        host, path = host.strip("[]"), ""
        if not sep or not port.isdigit():
            raise BadRequest("CONNECT needs host:port")
        number = int(port)
    else:
        url = urlsplit(head.target)
        if url.scheme != "http" or not url.hostname:
            raise BadRequest("only absolute http:// URLs (or CONNECT for https) are proxied")
        host, path = url.hostname, (url.path or "/") + (f"?{url.query}" if url.query else "")
        number = url.port or 80
    if not _valid_host(host) or not 0 < number < 65536:
        raise BadRequest("bad host or port")
    return host.lower(), number, path


def _valid_host(host: str) -> bool:
    if HOST_PATTERN.match(host):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class EgressProxy:
    """Serves one connection per :meth:`handle` call (give it to ``asyncio.start_unix_server``)."""

    def __init__(self, settings: GatewaySettings, layout: Layout) -> None:
        self.settings = settings
        self.layout = layout
        self._connections: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        """End every open connection (at shutdown)."""
        for task in list(self._connections):
            task.cancel()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client connection."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"),
                                          self.settings.head_timeout_s)
            head = parse_head(data[:-4])
            host, port, path = parse_target(head)
        except (asyncio.LimitOverrunError, ValueError) as error:
            why = "request head too large" if isinstance(error, asyncio.LimitOverrunError) else error
            await _answer(writer, 400, f"the egress proxy cannot serve this request: {why}")
            return
        caller = await self._admit(head, host, port, writer)
        if caller is None:
            return
        if not domain_allowed(host, caller.egress_allow):
            reason = (f"{host} is not on this task's egress allowlist; add it to the profile's "
                      "egress_allow to let workers reach it")
            self._record(caller, head.method, host, port, False, reason)
            await _answer(writer, 403, reason)
            return
        try:
            address = await self._address_of(host, port)
        except EgressRefused as refused:
            self._record(caller, head.method, host, port, False, str(refused))
            await _answer(writer, 403, str(refused))
            return
        except OSError as error:
            reason = f"cannot resolve {host} ({error})"
            self._record(caller, head.method, host, port, True, reason)
            await _answer(writer, 502, reason)
            return
        try:
            target_reader, target_writer = await asyncio.wait_for(
                asyncio.open_connection(address, port), self.settings.connect_timeout_s)
        except (OSError, TimeoutError) as error:
            reason = f"cannot connect to {host}:{port} ({error or type(error).__name__})"
            self._record(caller, head.method, host, port, True, reason)
            await _answer(writer, 502, reason)
            return
        self._record(caller, head.method, host, port, True, None)
        if head.method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            target_writer.write(_origin_request(head, host, port, path))
        await self._tunnel(reader, writer, target_reader, target_writer)

    async def _address_of(self, host: str, port: int) -> str:
        """The address to connect to for an allowed name: resolved here, once, so the check and
        the connection see the same address. A name that resolves to a loopback (unless allowed),
        link-local (cloud metadata), multicast, unspecified or reserved address is refused:
        allowing a name must not open the gateway's own host or its cloud's metadata service."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            forbidden = (address.is_link_local or address.is_multicast or address.is_unspecified
                         or address.is_reserved
                         or (address.is_loopback and not self.settings.egress_loopback))
            if forbidden:
                raise EgressRefused(
                    f"{host} resolves to {address}, an address the egress proxy never connects "
                    "to (loopback, link-local, multicast or reserved)")
        return str(infos[0][4][0])

    async def _admit(self, head: Head, host: str, port: int,
                     writer: asyncio.StreamWriter) -> GatewayCaller | None:
        credentials = proxy_credentials(head.header("proxy-authorization"))
        task, token = credentials or (None, None)
        try:
            return await asyncio.to_thread(admit, self.layout, token, task, self.settings.node)
        except RequestRefused as refused:
            if refused.caller is None:
                log.info("egress: unknown caller %s %s:%d refused (407)", head.method, host, port)
                await _answer(writer, 407, "the egress proxy needs Proxy-Authorization: Basic "
                              "base64(<task>:<caller token>)",
                              'Proxy-Authenticate: Basic realm="orchestrator-gateway"\r\n')
            else:
                self._record(refused.caller, head.method, host, port, False, refused.message)
                await _answer(writer, 403, refused.message)
            return None

    def _record(self, caller: GatewayCaller, method: str, host: str, port: int,
                allowed: bool, reason: str | None) -> None:
        entry = EgressEntry(at=utc_now(), task_id=caller.task_id, attempt=caller.attempt,
                            method=method, host=host[:300], port=port, allowed=allowed,
                            reason=reason)
        append_line(egress_file(self.layout, caller.task_id), entry)
        verdict = "allowed" if allowed else "refused"
        log.info("egress: task=%s attempt=%d %s %s:%d %s%s", caller.task_id, caller.attempt,
                 method, host, port, verdict, f" ({reason})" if reason else "")

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      target_reader: asyncio.StreamReader,
                      target_writer: asyncio.StreamWriter) -> None:
        activity = [time.monotonic()]
        try:
            await asyncio.gather(self._pump(reader, target_writer, activity),
                                 self._pump(target_reader, writer, activity))
        finally:
            target_writer.close()
            with contextlib.suppress(Exception):
                await target_writer.wait_closed()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    activity: list[float]) -> None:
        idle = self.settings.idle_timeout_s
        try:
            while True:
                try:
                    data = await asyncio.wait_for(source.read(CHUNK), idle)
                except TimeoutError:
                    if time.monotonic() - activity[0] < idle:
                        continue  # the other direction is busy
                    return
                if not data:
                    break
                activity[0] = time.monotonic()
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()
        except (ConnectionError, OSError):
            return


def _origin_request(head: Head, host: str, port: int, path: str) -> bytes:
    authority = host if port == 80 else f"{host}:{port}"
    lines = [f"{head.method} {path} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{k}: {v}" for k, v in head.headers if k.lower() not in DROP_HEADERS]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


REASONS = {400: "Bad Request", 403: "Forbidden", 407: "Proxy Authentication Required",
           502: "Bad Gateway"}


async def _answer(writer: asyncio.StreamWriter, status: int, message: str, extra: str = "") -> None:
    body = (message + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n".encode() + body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
