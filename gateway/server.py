"""``orchestrator-gateway``: the process that holds the model credential and is a worker's only
way out. It serves the model API on ``<root>/gateway/api.sock`` (uvicorn) and the egress proxy
on ``<root>/gateway/proxy.sock`` (asyncio) in one event loop, prints
``gateway ready: api <path>, proxy <path>, upstream <url>`` once both listen, and stops cleanly
on SIGTERM or SIGINT (exit 0). HTTP is parsed by httptools (C): on Claude Code's 50 KB
request bodies it took about 1 ms per request off the pure-Python h11. A bad setting: one sentence, exit 2; a socket
that cannot be bound: exit 3.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from orchestration_protocol import Layout
from orchestration_protocol.gateway import api_socket, bind_unix, proxy_socket

from .api import Gateway
from .app import build_app
from .cloud_credentials import read_aws_credential, read_vertex_credential
from .credentials import no_credential_message, read_credential
from .egress import EgressProxy
from .errors import EXIT_BAD_SETTING, EXIT_CANNOT_LISTEN, EXIT_OK, BadSetting
from .metrics import serve_metrics_from_env
from .settings import ENV_NAMES, environment, resolve_settings

log = logging.getLogger("gateway")
PROG = "orchestrator-gateway"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (ours stops the proxy too, and exits 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_parser() -> argparse.ArgumentParser:
    """The command line; every option falls back to the environment variable named."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The orchestrator's gateway: holds the model credential, forwards workers' "
        "model requests (bound to their claims, metered into the ledger, within budgets) and "
        "is their only way out (an egress proxy with a per-task allowlist).",
    )

    def option(name: str, kind: Callable[[str], Any] = str, help: str = "") -> None:
        env = ENV_NAMES[name]
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                            help=f"{help} (env {env})")

    option("root", Path, "the orchestration root (the shared volume)")
    option("upstream", str, "model API base URL, default https://api.anthropic.com")
    option("bedrock_upstream", str, "Bedrock base URL, default from the AWS region")
    option("vertex_upstream", str, "Vertex base URL, default from the region in the request")
    option("secrets_dir", Path, "credential files, default /run/orchestrator-secrets")
    option("max_body_bytes", int, "largest request body, default 32 MiB")
    option("max_retries", int, "retries of a 429/529 answer, default 4")
    option("retry_total_s", float, "most seconds waited for retries of one request, default 60")
    option("concurrency", int, "most upstream requests at once, default 8")
    option("task_concurrency", int, "most upstream requests of one task at once, default 4")
    option("caller_concurrency", int, "most upstream requests of one caller at once, default 4")
    option("queue_timeout_s", float, "longest wait for an upstream slot (then 529), default 120")
    option("connect_timeout_s", float, "connect timeout upstream and for egress, default 10")
    option("read_timeout_s", float, "longest upstream silence mid-reply, default 600")
    option("retry_base_s", float, "first backoff without retry-after (doubles), default 0.5")
    option("head_timeout_s", float, "egress: seconds to send the request head, default 10")
    option("idle_timeout_s", float, "egress: close a tunnel silent this long, default 600")
    option("max_head_bytes", int, "egress: largest request head, default 16 KiB")
    option("bytes_per_token", float, "body bytes held as one input token, default 3")
    option("min_output_tokens", int, "fewest output tokens max_tokens is lowered to, default 1024")
    for name in ("body_keys", "betas", "headers", "server_tools"):
        option(f"allow_{name}", _csv, f"more {name.replace('_', ' ')} to forward, comma-separated")
    parser.add_argument("--log-bodies", action="store_const", const=True, default=None,
                        help="log request bodies (prompts) on stderr (env GATEWAY_LOG_BODIES)")
    parser.add_argument("--egress-loopback", action="store_const", const=True, default=None,
                        help="egress: let allowed names that resolve to loopback through "
                        "(env GATEWAY_EGRESS_LOOPBACK)")
    parser.add_argument("--quiet", action="store_true", help="log only warnings on stderr")
    return parser


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gateway until SIGTERM or SIGINT; returns the exit code."""
    args = vars(build_parser().parse_args(argv))
    quiet = args.pop("quiet")
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="gateway: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpcore", "uvicorn", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = resolve_settings(**args)
        if not settings.root.is_dir():
            raise BadSetting(f"the orchestration root {settings.root} is not a directory; "
                             "pass --root or set ORCHESTRATION_DIR")
        credential = read_credential(settings.secrets_dir, environment())
        aws = read_aws_credential(settings.secrets_dir, environment())
        vertex = read_vertex_credential(settings.secrets_dir, environment())
        serve_metrics_from_env(environment())
    except BadSetting as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_BAD_SETTING
    layout = Layout(settings.root)
    try:
        api_sock, proxy_sock = bind_unix(api_socket(layout, settings.socket_dir)), bind_unix(
            proxy_socket(layout, settings.socket_dir))
    except OSError as error:
        print(f"{PROG}: cannot listen in {api_socket(layout, settings.socket_dir).parent}: {error.strerror}",
              file=sys.stderr)
        return EXIT_CANNOT_LISTEN
    gateway = Gateway.create(settings, credential, aws, vertex)
    if charged := gateway.book.sweep():
        log.warning("charged %d hold(s) left by a gateway that stopped mid-request", charged)
    if credential is None and aws is None and vertex is None:
        log.warning("%s; model requests will be refused", no_credential_message())
    if credential is not None:
        log.info("credential %s; upstream %s", credential.name, settings.upstream)
    if aws is not None:
        log.info("Bedrock credential AWS_ACCESS_KEY_ID (region %s); upstream %s",
                 aws.region, gateway.bedrock.base_url)
    if vertex is not None:
        log.info("Vertex credential %s; upstream %s", vertex.name,
                 settings.vertex_upstream or "https://<region>-aiplatform.googleapis.com")
    asyncio.run(serve(gateway, api_sock, proxy_sock))
    return EXIT_OK


async def serve(gateway: Gateway, api_sock: socket.socket, proxy_sock: socket.socket) -> None:
    """Serve both sockets until a signal (or the API server) stops them."""
    config = uvicorn.Config(build_app(gateway), lifespan="off", log_config=None,
                            access_log=False, http="httptools", timeout_graceful_shutdown=5,
                            timeout_keep_alive=75)
    server = _Server(config)
    proxy = EgressProxy(gateway.settings, gateway.layout)
    proxy_server = await asyncio.start_unix_server(proxy.handle, sock=proxy_sock,
                                                   limit=gateway.settings.max_head_bytes)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop, server)
    serving = asyncio.create_task(server.serve(sockets=[api_sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started:
        print(f"gateway ready: api {api_socket(gateway.layout, gateway.settings.socket_dir)}, proxy "
              f"{proxy_socket(gateway.layout, gateway.settings.socket_dir)}, upstream {gateway.settings.upstream}", flush=True)
    try:
        await serving
    finally:
        proxy_server.close()
        proxy.close()
        for upstream in gateway.upstreams:
            await upstream.aclose()
        gateway.book.close()
        sockets = gateway.settings.socket_dir
        for path in (api_socket(gateway.layout, sockets), proxy_socket(gateway.layout, sockets)):
            with contextlib.suppress(OSError):
                path.unlink()
        log.info("stopped")


def _stop(server: uvicorn.Server) -> None:
    if server.should_exit:
        server.force_exit = True
    server.should_exit = True


if __name__ == "__main__":
    raise SystemExit(main())
