"""Test helpers for the gateway: the gateway as a real process, callers bound to real claims,
httpx clients over its Unix sockets, and a TCP relay to a Unix socket (for the ``claude``
binary, which speaks TCP only)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from orchestration_protocol import (
    ClaimHandle,
    Layout,
    Task,
    WorkerPhase,
    claim_task,
    utc_now,
    write_task,
)
from orchestration_protocol.gateway import (
    GatewayCaller,
    api_socket,
    connect_unix,
    mint_caller_token,
    proxy_socket,
    short_socket_path,
)

REAL_KEY = "sk-ant-real-credential-0123456789"
REPO = Path(__file__).resolve().parent.parent


@dataclass
class GatewayProcess:
    """``python -m gateway`` on a layout, stopped with SIGTERM by :meth:`stop`."""

    layout: Layout
    upstream: str
    secrets_dir: Path
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None
    ready_line: str = ""
    _stderr_path: Path | None = None

    def start(self) -> GatewayProcess:
        self._stderr_path = self.layout.root.parent / f"gateway-{os.getpid()}-{id(self)}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "GATEWAY_"))}
        env["PYTHONPATH"] = str(REPO)
        command = [sys.executable, "-m", "gateway", "--root", str(self.layout.root),
                   "--upstream", self.upstream, "--secrets-dir", str(self.secrets_dir), *self.args]
        with self._stderr_path.open("w") as err:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err,
                                            text=True, env=env)
        assert self.process.stdout is not None
        self.ready_line = self.process.stdout.readline().strip()
        if not self.ready_line.startswith("gateway ready"):
            self.process.kill()
            raise RuntimeError(f"the gateway did not start: {self.stderr}")
        return self

    @property
    def stderr(self) -> str:
        return self._stderr_path.read_text() if self._stderr_path else ""

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(timeout=15)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_secret(directory: Path, name: str = "ANTHROPIC_API_KEY", value: str = REAL_KEY) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(value + "\n")
    return directory


@dataclass
class Caller:
    """A claimed attempt and the token its runtime minted for it."""

    handle: ClaimHandle
    token: str

    @property
    def task_id(self) -> str:
        return self.handle.task_id


def claim_caller(layout: Layout, task_id: str, *, lease_s: float = 60,
                 egress_allow: list[str] | None = None, **task_fields: object) -> Caller:
    """Write a task, claim its first attempt (heartbeat once) and mint a caller token."""
    write_task(layout, Task.model_validate({"id": task_id, "prompt": "reply: hello", **task_fields}))
    handle = claim_task(layout, task_id, lease_s=lease_s)
    assert handle is not None
    handle.heartbeat(WorkerPhase.RUNNING)
    return Caller(handle, mint_for(layout, handle, egress_allow or []))


def mint_for(layout: Layout, handle: ClaimHandle, egress_allow: list[str]) -> str:
    caller = GatewayCaller(task_id=handle.task_id, attempt=handle.attempt,
                           worker_id=handle.claim.worker_id, issued_at=utc_now(),
                           egress_allow=egress_allow)
    return mint_caller_token(layout, caller)


@contextlib.contextmanager
def unix_client(path: Path, **kwargs: object) -> Iterator[httpx.Client]:
    """An httpx client whose every request goes to the Unix socket at ``path``."""
    short, fd = short_socket_path(path)
    try:
        transport = httpx.HTTPTransport(uds=short)
        with httpx.Client(transport=transport, base_url="http://gateway", **kwargs) as client:  # type: ignore[arg-type]
            yield client
    finally:
        os.close(fd)


def api_client(layout: Layout, timeout: float = 30) -> contextlib.AbstractContextManager[httpx.Client]:
    return unix_client(api_socket(layout), timeout=timeout)


def message_body(prompt: str = "reply: hello", *, stream: bool = True, model: str = "claude-opus-5-5") -> dict[str, object]:
    return {"model": model, "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": prompt}]}


def proxy_exchange(layout: Layout, request: bytes, then: bytes = b"") -> bytes:
    """Send ``request`` (and, once answered, ``then``) to the egress proxy; all it answers."""
    with connect_unix(proxy_socket(layout), timeout_s=10) as sock:
        sock.sendall(request)
        if then:
            head = sock.recv(65536)
            sock.sendall(then)
            sock.shutdown(socket.SHUT_WR)
        else:
            head = b""
        chunks = [head]
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)
