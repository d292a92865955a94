"""The gateway's egress proxy: CONNECT tunnels and absolute-form HTTP to hosts on the caller's
allowlist, refusals (unknown caller 407, off-list host 403, ended attempt 403), and
``egress/<task>.jsonl``. Targets are listeners of the test's own on loopback, so the gateway runs
with ``--egress-loopback`` (off by default: then an allowed name that resolves to loopback is
refused, as the last test shows)."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestration_protocol import Layout, request_cancel
from orchestration_protocol.gateway import read_egress
from tests.gateway_helpers import GatewayProcess, claim_caller, proxy_exchange, write_secret


@pytest.fixture
def gateway(layout: Layout, tmp_path: Path) -> Iterator[GatewayProcess]:
    secrets = write_secret(tmp_path / "secrets")
    with GatewayProcess(layout, "http://127.0.0.1:9", secrets, ["--egress-loopback"]) as gw:
        yield gw


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP listener that answers each connection with ``echo:`` and what it received."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"echo:" + conn.recv(1024))

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.requestline, dict(self.headers.items())))
        body = b"hello from the test internet\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web() -> Iterator[tuple[int, list[tuple[str, dict[str, str]]]]]:
    seen: list[tuple[str, dict[str, str]]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def auth(task: str, token: str) -> str:
    return "Proxy-Authorization: Basic " + base64.b64encode(f"{task}:{token}".encode()).decode()


def test_connect_reaches_an_allowed_host_and_an_unlisted_one_is_refused(
    layout: Layout, gateway: GatewayProcess, echo_port: int
) -> None:
    caller = claim_caller(layout, "fetch", egress_allow=["localhost"])
    header = auth("fetch", caller.token)
    allowed = proxy_exchange(
        layout, f"CONNECT localhost:{echo_port} HTTP/1.1\r\n{header}\r\n\r\n".encode(), b"ping")
    assert allowed == b"HTTP/1.1 200 Connection Established\r\n\r\necho:ping"
    refused = proxy_exchange(
        layout, f"CONNECT registry.example:443 HTTP/1.1\r\n{header}\r\n\r\n".encode())
    assert refused.startswith(b"HTTP/1.1 403 ")
    assert (b"registry.example is not on this task's egress allowlist; add it to the profile's "
            b"egress_allow") in refused
    log = read_egress(layout, "fetch")
    assert [(e.method, e.host, e.port, e.allowed) for e in log] == [
        ("CONNECT", "localhost", echo_port, True), ("CONNECT", "registry.example", 443, False)]
    assert log[1].reason and "allowlist" in log[1].reason


def test_absolute_form_http_is_sent_on_in_origin_form_without_the_token(
    layout: Layout, gateway: GatewayProcess, web: tuple[int, list[tuple[str, dict[str, str]]]]
) -> None:
    port, seen = web
    caller = claim_caller(layout, "plain", egress_allow=["*.localhost", "localhost"])
    request = (f"GET http://localhost:{port}/simple/pkg/?x=1 HTTP/1.1\r\nHost: localhost\r\n"
               f"{auth('plain', caller.token)}\r\nAccept: */*\r\n\r\n")
    answer = proxy_exchange(layout, request.encode())
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(b"hello from the test internet\n")
    [(line, headers)] = seen
    assert line == "GET /simple/pkg/?x=1 HTTP/1.1"
    assert headers["Host"] == f"localhost:{port}" and headers["Connection"] == "close"
    assert not any(k.lower().startswith("proxy-") for k in headers)
    assert [(e.method, e.allowed) for e in read_egress(layout, "plain")] == [("GET", True)]


def test_missing_or_unknown_proxy_credentials_get_407(layout: Layout, gateway: GatewayProcess) -> None:
    caller = claim_caller(layout, "anon", egress_allow=["localhost"])
    for header in ("", auth("anon", "orc-wrong") + "\r\n", auth("other", caller.token) + "\r\n"):
        answer = proxy_exchange(layout, f"CONNECT localhost:1 HTTP/1.1\r\n{header}\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 407 ")
        assert b'Proxy-Authenticate: Basic realm="orchestrator-gateway"' in answer
    assert read_egress(layout, "anon") == []


def test_a_cancelled_attempt_gets_no_way_out(layout: Layout, gateway: GatewayProcess, echo_port: int) -> None:
    caller = claim_caller(layout, "stopped", egress_allow=["localhost"])
    request_cancel(layout, "stopped")
    header = auth("stopped", caller.token)
    answer = proxy_exchange(layout, f"CONNECT localhost:{echo_port} HTTP/1.1\r\n{header}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 ") and b"was cancelled" in answer
    [entry] = read_egress(layout, "stopped")
    assert not entry.allowed


def test_malformed_request_heads_get_400(layout: Layout, gateway: GatewayProcess) -> None:
    for head in (b"CONNECT nohost HTTP/1.1\r\n\r\n", b"GET https://x/ HTTP/1.1\r\n\r\n",
                 b"GET / HTTP/1.1\r\n bad fold\r\n\r\n", b"CONNECT a:1 HTTP/1.1\r\n" + b"X: y" * 5000):
        assert proxy_exchange(layout, head).startswith(b"HTTP/1.1 400 ")


def test_an_unreachable_allowed_target_is_502_and_logged(layout: Layout, gateway: GatewayProcess) -> None:
    caller = claim_caller(layout, "closed", egress_allow=["localhost"])
    header = auth("closed", caller.token)
    answer = proxy_exchange(layout, f"CONNECT localhost:9 HTTP/1.1\r\n{header}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 502 ")
    [entry] = read_egress(layout, "closed")
    assert entry.allowed and entry.reason and "cannot connect to localhost:9" in entry.reason


def test_an_allowed_name_that_resolves_to_loopback_or_link_local_is_refused_by_default(
    layout: Layout, tmp_path: Path, echo_port: int
) -> None:
    caller = claim_caller(layout, "rebind", egress_allow=["localhost", "127.0.0.1", "169.254.169.254"])
    header = auth("rebind", caller.token)
    with GatewayProcess(layout, "http://127.0.0.1:9", write_secret(tmp_path / "secrets")):
        for target in (f"localhost:{echo_port}", f"127.0.0.1:{echo_port}", "169.254.169.254:80"):
            refused = proxy_exchange(
                layout, f"CONNECT {target} HTTP/1.1\r\n{header}\r\n\r\n".encode())
            assert refused.startswith(b"HTTP/1.1 403 ") and b"never connects to" in refused
            assert b"echo:" not in refused
    log = read_egress(layout, "rebind")
    assert [entry.allowed for entry in log] == [False, False, False]
    assert "resolves to 169.254.169.254" in (log[2].reason or "")
