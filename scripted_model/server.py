"""The scripted model endpoint: an HTTP server speaking the part of Anthropic's Messages API
that Claude Code uses, answering from scenarios.

In tests::

    with ScriptedModelServer(load_scenarios()) as server:
        env = {"ANTHROPIC_BASE_URL": server.url, ...}
        ...
        assert server.turn_requests()[0].scenario == "default"

As a process: ``scripted-model --host 127.0.0.1 --port 0`` prints the bound URL on its first
stdout line (and writes it to ``--port-file`` if given), logs each request on stderr, and stops
cleanly on SIGTERM or SIGINT.

Routes: ``POST /v1/messages`` (streamed when the body says ``"stream": true``, as Claude Code
does), ``POST /v1/messages/count_tokens``, ``GET /v1/models``, ``GET /health``; anything else is
logged and answered 404 with Anthropic's error JSON.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Self

from .cloud import AwsKey, CloudRoutes
from .conversation import read_conversation
from .exceptions import ScenarioFileError
from .replies import (
    ErrorReply,
    Reply,
    encode_event,
    error_body,
    message_json,
    plan_reply,
    stream_events,
)
from .scenario import Scenario, ScenarioBook, ScenarioFile, load_scenarios

log = logging.getLogger("scripted_model")

RET_OK = 0
RET_BAD_SCENARIO = 2
RET_CANNOT_BIND = 3

REQUIRE_KEY_ENV = "SCRIPTED_MODEL_REQUIRE_KEY"
"""Environment fallback of ``--require-key``."""
BEDROCK_KEY_ENV = "SCRIPTED_MODEL_BEDROCK_KEY"
"""Environment fallback of ``--bedrock-key`` (``ACCESS:SECRET[:TOKEN]``)."""
VERTEX_TOKEN_ENV = "SCRIPTED_MODEL_VERTEX_TOKEN"
"""Environment fallback of ``--vertex-token``."""

MODELS = ["claude-opus-5-5", "claude-sonnet-4-5", "claude-haiku-4-5"]
"""Model ids listed by ``GET /v1/models`` (any model name is accepted in requests)."""


@dataclass
class RecordedRequest:
    """One request the server answered, kept for assertions and the ``--log-file``."""

    method: str
    """HTTP method."""

    path: str
    """Path with query, e.g. ``/v1/messages?beta=true``."""

    headers: dict[str, str]
    """Request headers."""

    body: Any
    """The parsed JSON body (None when there was none)."""

    kind: str = "unknown"
    """``turn``, ``side``, ``count_tokens``, ``models``, ``health``, ``bad_request``,
    ``auth_error`` (wrong key with ``--require-key``), ``rate_limited``, ``unknown``."""

    scenario: str | None = None
    """The scenario that answered a turn (``side:<kind>`` for side requests)."""

    turn: int | None = None
    """The turn index of a ``/v1/messages`` request."""

    prompt: str | None = None
    """The latest prompt of a ``/v1/messages`` request."""

    status: int = 200
    """The HTTP status answered."""

    stop_reason: str | None = None
    """The stop reason of the reply, None for errors and other routes."""

    tool_names: list[str] = field(default_factory=list)
    """The tools the reply called."""

    time: float = field(default_factory=time.time)
    """When the request arrived (Unix time)."""


class _Handler(CloudRoutes, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each event goes out at once, as a real API's would
    timeout = 600
    server: _HTTPServer

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self) -> None:
        raw = self.raw_body = self._read_body()
        record = RecordedRequest(self.command, self.path, dict(self.headers.items()), None)
        try:
            record.body = json.loads(raw) if raw else None
        except ValueError:
            record.kind = "bad_request"
            self._send_json(400, error_body("invalid_request_error", "body is not JSON"), record)
        else:
            self._route(record)

    def _route(self, record: RecordedRequest) -> None:
        route = self.path.split("?", 1)[0].rstrip("/")
        if self.cloud_route(record, route):
            return
        if route.startswith("/v1/") and not self._admitted(record):
            return
        if self.command == "POST" and route == "/v1/messages" and self._rate_limited(record):
            return
        if self.command == "POST" and route == "/v1/messages":
            self._messages(record)
        elif self.command == "POST" and route == "/v1/messages/count_tokens":
            record.kind = "count_tokens"
            tokens = max(1, len(json.dumps(record.body)) // 4)
            self._send_json(200, {"input_tokens": tokens}, record)
        elif self.command in ("GET", "HEAD") and route.startswith("/v1/models"):
            record.kind = "models"
            self._send_json(200, _models_json(route), record)
        elif self.command in ("GET", "HEAD") and route in ("", "/health"):
            record.kind = "health"
            names = self.server.owner.book.names()
            self._send_json(200, {"status": "ok", "scenarios": names}, record)
        else:
            log.warning("unknown route %s %s: answered 404", self.command, self.path)
            message = f"scripted model: no route {self.command} {route}"
            self._send_json(404, error_body("not_found_error", message), record)

    def _admitted(self, record: RecordedRequest) -> bool:
        """With ``--require-key``: whether the request carries that key (else answer 401)."""
        wanted = self.server.owner.require_key
        if wanted is None:
            return True
        given = self.headers.get("x-api-key") or ""
        scheme, _, bearer = (self.headers.get("authorization") or "").partition(" ")
        if hmac.compare_digest(given.encode(), wanted.encode()) or (
            scheme.lower() == "bearer" and hmac.compare_digest(bearer.strip().encode(), wanted.encode())
        ):
            return True
        record.kind = "auth_error"
        message = "scripted model: the credential was wrong (not the key given by --require-key)"
        self._send_json(401, error_body("authentication_error", message), record,
                        {"x-should-retry": "false"})
        return False

    def _rate_limited(self, record: RecordedRequest) -> bool:
        """With ``--rate-limit-first N``: answer 429 to the first N message requests."""
        owner = self.server.owner
        if not owner.take_rate_limit():
            return False
        record.kind = "rate_limited"
        message = "scripted model: rate limited (--rate-limit-first)"
        headers = {"retry-after": f"{owner.retry_after_s:g}", "x-should-retry": "true"}
        self._send_json(429, error_body("rate_limit_error", message), record, headers)
        return True

    def _messages(self, record: RecordedRequest) -> None:
        body = record.body if isinstance(record.body, dict) else {}
        conversation = read_conversation(body, record.headers)
        reply, record.scenario = plan_reply(self.server.owner.book, conversation, body)
        record.kind = "side" if conversation.side_kind else "turn"
        record.turn, record.prompt = conversation.turn, conversation.prompt
        if isinstance(reply, ErrorReply):
            headers = {"x-should-retry": "true" if reply.retryable else "false"}
            self._send_json(reply.status, reply.body, record, headers)
            return
        max_tokens = body.get("max_tokens")
        if (isinstance(max_tokens, int) and 0 < max_tokens < reply.usage.output_tokens
                and not conversation.side_kind):
            usage = reply.usage.model_copy(update={"output_tokens": max_tokens})
            reply = replace(reply, usage=usage, stop_reason="max_tokens")  # as the real API
        record.stop_reason = reply.stop_reason
        record.tool_names = [b["name"] for b in reply.content if b["type"] == "tool_use"]
        if reply.delay_s:
            self.server.owner.stopping.wait(reply.delay_s)
        if body.get("stream"):
            self._send_stream(reply, record)
        else:
            self._send_json(200, message_json(reply), record)

    def _send_json(
        self,
        status: int,
        payload: Any,
        record: RecordedRequest,
        headers: dict[str, str] | None = None,
    ) -> None:
        record.status = status
        self.server.owner.record(record)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", f"req_scripted_{int(time.time() * 1000)}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_stream(self, reply: Reply, record: RecordedRequest) -> None:
        events = (encode_event(name, data) for name, data in stream_events(reply))
        self._send_chunked(record, "text/event-stream; charset=utf-8", events)

    def _send_chunked(self, record: RecordedRequest, content_type: str,
                      chunks: Iterable[bytes]) -> None:
        self.server.owner.record(record)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", f"req_scripted_{int(time.time() * 1000)}")
        self.end_headers()
        for number, chunk in enumerate(chunks):
            if number and self.server.owner.event_delay_s:
                self.server.owner.stopping.wait(self.server.owner.event_delay_s)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _models_json(route: str) -> dict[str, Any]:
    def model(model_id: str) -> dict[str, Any]:
        return {"type": "model", "id": model_id, "display_name": f"{model_id} (scripted)",
                "created_at": "2025-01-01T00:00:00Z"}

    wanted = route.removeprefix("/v1/models").strip("/")
    if wanted:
        return model(wanted)
    return {"data": [model(m) for m in MODELS], "has_more": False,
            "first_id": MODELS[0], "last_id": MODELS[-1]}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: ScriptedModelServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class ScriptedModelServer:
    """The scripted endpoint, in a background thread of this process."""

    def __init__(
        self,
        scenarios: ScenarioBook | Iterable[Scenario] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_file: Path | None = None,
        require_key: str | None = None,
        rate_limit_first: int = 0,
        retry_after_s: float = 1.0,
        event_delay_s: float = 0.0,
        aws_key: AwsKey | None = None,
        vertex_token: str | None = None,
    ) -> None:
        """``scenarios`` default to :func:`load_scenarios` (``$SCRIPTED_MODEL_SCENARIOS``, then
        the built-in ones). ``host="0.0.0.0"`` makes it reachable from containers.
        ``require_key``: answer 401 to ``/v1/*`` requests that do not carry this key (as
        ``x-api-key`` or Bearer). ``rate_limit_first``: answer the first N ``POST /v1/messages``
        429 with ``retry-after: retry_after_s``. ``event_delay_s``: pause between the events
        of a streamed reply (to see streaming pass through a proxy). ``aws_key``: Bedrock paths
        need a SigV4 signature made with it (else 403); ``vertex_token``: Vertex paths need it
        as Bearer (else 401). See :mod:`scripted_model.cloud`."""
        if scenarios is None:
            scenarios = load_scenarios()
        self.book = scenarios if isinstance(scenarios, ScenarioBook) else ScenarioBook(scenarios)
        """The scenarios answered from."""
        self.host, self.port = host, port
        self.log_file = log_file
        """A JSON-lines file each request is appended to, if given."""
        self.require_key = require_key
        """The only credential accepted on ``/v1/*``, if set."""
        self.rate_limit_left = rate_limit_first
        """How many more message requests are answered 429."""
        self.retry_after_s = retry_after_s
        """The ``retry-after`` seconds sent with a 429."""
        self.event_delay_s = event_delay_s
        """Pause between the events of a streamed reply."""
        self.aws_key = aws_key
        """The key pair Bedrock requests must be signed with, if set."""
        self.vertex_token = vertex_token
        """The Bearer token Vertex requests must carry, if set."""
        self.stopping = threading.Event()
        """Set by :meth:`stop`; cuts scripted delays short."""
        self._records: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to put in ``ANTHROPIC_BASE_URL`` (loopback when bound to all hosts)."""
        if self._httpd is None:
            raise RuntimeError("the scripted model server is not started")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Bind and serve in a daemon thread; ``port=0`` picks a free port (see :attr:`url`)."""
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self.stopping.clear()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="scripted-model", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def record(self, request: RecordedRequest) -> None:
        """Keep ``request`` (and append it to the log file) and log one line about it."""
        with self._lock:
            self._records.append(request)
            if self.log_file is not None:
                with self.log_file.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(asdict(request)) + "\n")
        prompt = (request.prompt or "")[:60]
        log.info(
            "%s %s -> %s %s scenario=%s turn=%s stop=%s tools=%s prompt=%r",
            request.method, request.path, request.status, request.kind, request.scenario,
            request.turn, request.stop_reason, ",".join(request.tool_names), prompt,
        )

    def take_rate_limit(self) -> bool:
        """Whether this message request is to be answered 429 (counts it down)."""
        with self._lock:
            if self.rate_limit_left <= 0:
                return False
            self.rate_limit_left -= 1
            return True

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered so far, in order (a copy)."""
        with self._lock:
            return list(self._records)

    def turn_requests(self) -> list[RecordedRequest]:
        """The requests that were turns of a scripted conversation (no side requests)."""
        return [r for r in self.requests if r.kind == "turn"]

    def clear_requests(self) -> None:
        """Forget the requests recorded so far."""
        with self._lock:
            self._records.clear()


def build_parser() -> argparse.ArgumentParser:
    """The ``scripted-model`` command line."""
    parser = argparse.ArgumentParser(
        prog="scripted-model",
        description="Serve a scripted Anthropic Messages API for Claude Code "
        "(set ANTHROPIC_BASE_URL to the URL printed on the first line).",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; 0.0.0.0 to be reachable from containers")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--port-file", type=Path, help="also write the bound port to this file")
    parser.add_argument("--scenario", type=Path, action="append", default=[], metavar="FILE",
                        help="a scenario file (repeatable; tried before the built-in ones)")
    parser.add_argument("--scenarios", type=Path, action="append", default=[], metavar="DIR",
                        help="a directory of *.json scenario files (repeatable)")
    parser.add_argument("--no-builtin", action="store_true",
                        help="leave out the built-in scenarios")
    parser.add_argument("--log-file", type=Path, help="append every request as JSON lines here")
    parser.add_argument("--require-key", default=os.environ.get(REQUIRE_KEY_ENV) or None,
                        metavar="KEY", help="answer 401 to /v1/* requests without this key "
                        f"(x-api-key or Bearer; env {REQUIRE_KEY_ENV})")
    parser.add_argument("--rate-limit-first", type=int, default=0, metavar="N",
                        help="answer the first N POST /v1/messages with 429")
    parser.add_argument("--retry-after", type=float, default=1.0, metavar="S",
                        help="the retry-after seconds of those 429 answers (default 1)")
    parser.add_argument("--event-delay", type=float, default=0.0, metavar="S",
                        help="pause S seconds between the events of a streamed reply")
    parser.add_argument("--bedrock-key", metavar="ACCESS:SECRET[:TOKEN]",
                        default=os.environ.get(BEDROCK_KEY_ENV) or None,
                        help="Bedrock paths need a SigV4 signature with this key pair "
                        f"(env {BEDROCK_KEY_ENV})")
    parser.add_argument("--bedrock-region", default="us-east-1",
                        help="the region Bedrock signatures must name (default us-east-1)")
    parser.add_argument("--vertex-token", default=os.environ.get(VERTEX_TOKEN_ENV) or None,
                        help=f"Vertex paths need this Bearer token (env {VERTEX_TOKEN_ENV})")
    parser.add_argument("--quiet", action="store_true", help="log only warnings on stderr")
    parser.add_argument("--schema", action="store_true",
                        help="print the JSON Schema of a scenario file and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.schema:
        print(json.dumps(ScenarioFile.model_json_schema(), indent=2))
        return RET_OK
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="scripted-model: %(message)s", stream=sys.stderr)
    try:
        book = load_scenarios([*args.scenario, *args.scenarios], builtin=not args.no_builtin)
    except ScenarioFileError as error:
        print(f"scripted-model: {error}", file=sys.stderr)
        return RET_BAD_SCENARIO
    server = ScriptedModelServer(book, host=args.host, port=args.port, log_file=args.log_file,
                                 require_key=args.require_key,
                                 rate_limit_first=args.rate_limit_first,
                                 retry_after_s=args.retry_after,
                                 event_delay_s=args.event_delay,
                                 aws_key=_aws_key(args.bedrock_key, args.bedrock_region),
                                 vertex_token=args.vertex_token)
    try:
        server.start()
    except OSError as error:
        print(f"scripted-model: cannot listen on {args.host}:{args.port}: {error.strerror}; "
              "choose another --port (0 picks a free one)", file=sys.stderr)
        return RET_CANNOT_BIND
    if args.port_file:
        partial = args.port_file.with_name(args.port_file.name + ".partial")
        partial.write_text(f"{server.port}\n", encoding="utf-8")
        partial.replace(args.port_file)
    print(server.url, flush=True)
    log.info("serving %d scenarios: %s", len(book.scenarios), ", ".join(book.names()))
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    done.wait()
    server.stop()
    return RET_OK


def _aws_key(value: str | None, region: str) -> AwsKey | None:
    if not value:
        return None
    access, _, rest = value.partition(":")
    secret, _, token = rest.partition(":")
    return AwsKey(access, secret, region, token or None)


if __name__ == "__main__":
    raise SystemExit(main())
