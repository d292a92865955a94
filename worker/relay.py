"""The agent's only way out: loopback ports inside the worker, relayed to the gateway's sockets.

A worker container has no network (``--network none``), only loopback. The runtime listens on
``127.0.0.1:<port>`` and copies each connection's bytes to a Unix socket of the gateway in the
orchestration volume, which the agent cannot open itself (the volume is the runtime's alone).
The relay adds nothing and reads nothing: the gateway checks the caller token the agent sends.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

from orchestration_protocol.gateway import connect_unix

CHUNK = 64 * 1024


class Relay:
    """Accepts on a loopback port and pipes every connection to ``target`` (a Unix socket)."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"relay-{target.name}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        # Each chunk of a streamed reply goes to the agent at once: with Nagle's algorithm a
        # small write waits for the agent's (delayed, up to 40 ms) ACK of the previous one.
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            upstream = connect_unix(self.target, timeout_s=5)
        except OSError:
            client.close()  # the agent sees the connection closed: the gateway is not there
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy until ``source`` ends, then end ``sink``'s writing side."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            source.shutdown(socket.SHUT_RD)
