"""Benchmark of the gateway: the latency it adds to a streamed reply, and fan-out through it.

Run by hand (host processes only, no Docker, nothing leaves the machine; part 2 needs the
``claude`` binary, see ``scripted_model.claude_binary.find_claude``)::

    .venv/bin/python scripts/bench/gateway.py [--quick] [--requests N] [--rounds N]

Every part is a real process: the scripted model (``python -m scripted_model``, requiring the
real key), the gateway (``python -m gateway --root R --upstream URL --secrets-dir D``, holding
that key), and the worker's relay (``worker.relay.Relay``, a loopback TCP port copied to the
gateway's ``api.sock``) in a process of its own, as in a worker's runtime. Each caller is a
task claimed on the root, heartbeating, with a caller token minted for its attempt.

It prints markdown tables (ready for the README):

1. Added latency. ``POST /v1/messages`` (``stream: true``, a 50 KB body like Claude Code's
   first request) answered by a stream of 55 events (about 2 KB of text, 1 ms apart), each path
   on one kept-alive connection, paths interleaved request by request: directly to the scripted
   model over TCP (the baseline), to the gateway's Unix socket, and through the relay to the
   gateway (the way a worker's agent reaches it). Time to the reply's first byte, to its first
   event, and to the whole stream; p50 and p99 over N requests each (default 200, quick 50).
2. Fan-out: 16 concurrent ``claude -p`` runs of the scripted ``default`` scenario (4 model
   requests, Write, Edit, Bash), directly against the scripted model vs each through its own
   relay and the gateway with its own claimed task and token; makespan (median of the rounds)
   and ratio, and the gateway's memory after it.

Default run: about 2 minutes; --quick: under 1 minute.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestration_protocol import Layout, Task, WorkerPhase, claim_task, utc_now, write_task
from orchestration_protocol.gateway import (
    GatewayCaller,
    api_socket,
    connect_unix,
    mint_caller_token,
    read_ledger,
)
from scripted_model import ClaudeNotFound, claude_env, find_claude
from worker.relay import Relay

REAL_KEY = "sk-ant-bench-real-credential-0123456789"
PROMPT = "bench stream"
STREAM_TEXT = ("The gateway relays this reply chunk by chunk as the model writes it. " * 30)[:2000]
FANOUT = 16
FANOUT_PROMPT = "Add a greeting file"
GOAL_FIRST_BYTE_S = 0.005
Timings = tuple[float, float, float]
"""Seconds to the first byte, to the first event, and to the end of one streamed reply."""


# --- the processes -------------------------------------------------------------------------------


def start_model(directory: Path, event_delay_s: float) -> tuple[subprocess.Popen[str], str]:
    """``python -m scripted_model`` with the benchmark's scenario, accepting only the real key."""
    scenario = directory / "bench-scenario.json"
    scenario.write_text(
        json.dumps(
            {
                "scenarios": [
                    {
                        "name": "bench-stream",
                        "match": PROMPT,
                        "final_text": STREAM_TEXT,
                        "usage": {"input_tokens": 12000, "output_tokens": 500},
                    }
                ]
            }
        )
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scripted_model",
            "--port",
            "0",
            "--quiet",
            "--scenario",
            str(scenario),
            "--require-key",
            REAL_KEY,
            "--event-delay",
            f"{event_delay_s:g}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        process.kill()
        raise SystemExit(f"the scripted model did not start (it printed {url!r})")
    return process, url


def start_gateway(layout: Layout, upstream: str, directory: Path) -> subprocess.Popen[str]:
    """``python -m gateway`` holding the real key, logging at its default level to a file."""
    secrets = directory / "secrets"
    secrets.mkdir()
    (secrets / "ANTHROPIC_API_KEY").write_text(REAL_KEY + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "GATEWAY_"))}
    with (directory / "gateway.err").open("w") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "--root",
                str(layout.root),
                "--upstream",
                upstream,
                "--secrets-dir",
                str(secrets),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    assert process.stdout is not None
    if not process.stdout.readline().startswith("gateway ready"):
        process.kill()
        raise SystemExit(f"the gateway did not start: {(directory / 'gateway.err').read_text()}")
    return process


def _serve_relays(targets: list[str], pipe: multiprocessing.connection.Connection) -> None:
    relays = [Relay(Path(target)) for target in targets]
    pipe.send([relay.url for relay in relays])
    pipe.recv()  # until told to stop
    for relay in relays:
        relay.close()


class RelayProcess:
    """``count`` relays to the gateway's API socket, in one process of their own (a runtime)."""

    def __init__(self, target: Path, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(
            target=_serve_relays, args=([str(target)] * count, child), daemon=True
        )
        self.process.start()
        self.urls: list[str] = self._pipe.recv()

    def close(self) -> None:
        self._pipe.send("stop")
        self.process.join(timeout=10)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
    process.wait(timeout=15)


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, in MB."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def claim_caller(layout: Layout, task_id: str) -> str:
    """Write a task, claim its first attempt, heartbeat once and mint its caller token."""
    write_task(layout, Task(id=task_id, prompt=PROMPT))
    handle = claim_task(layout, task_id, worker_id="bench:1", lease_s=900)
    assert handle is not None
    handle.heartbeat(WorkerPhase.RUNNING)
    caller = GatewayCaller(
        task_id=task_id,
        attempt=handle.attempt,
        worker_id=handle.claim.worker_id,
        issued_at=utc_now(),
    )
    return mint_caller_token(layout, caller)


# --- 1. added latency ----------------------------------------------------------------------------


def request_bytes(key: str) -> bytes:
    """A streamed message request shaped like Claude Code's first one (about 50 KB)."""
    tools = [
        {
            "name": f"Tool{i}",
            "description": "Does one thing for the agent. " * 110,
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
        }
        for i in range(12)
    ]
    body = json.dumps(
        {
            "model": "claude-opus-5-5",
            "max_tokens": 32000,
            "stream": True,
            "system": [{"type": "text", "text": "You are Claude Code. " * 600}],
            "tools": tools,
            "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
        }
    ).encode()
    head = (
        "POST /v1/messages?beta=true HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"x-api-key: {key}\r\nanthropic-version: 2023-06-01\r\n"
        "content-type: application/json\r\naccept: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def exchange(sock: socket.socket, request: bytes) -> Timings:
    """Send one request on a kept-alive connection and read its streamed reply to the end."""
    started = time.perf_counter()
    sock.sendall(request)
    buffer = bytearray()
    first_byte = first_event = 0.0
    while not buffer.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"the connection closed mid-reply: {bytes(buffer[:300])!r}")
        now = time.perf_counter()
        first_byte = first_byte or now
        buffer += chunk
        if not first_event and b"event: message_start" in buffer:
            first_event = now
    if not buffer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the reply was not 200: {bytes(buffer[:400])!r}")
    return first_byte - started, first_event - started, time.perf_counter() - started


def tcp(url: str) -> Callable[[], socket.socket]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return lambda: socket.create_connection((host, int(port)))


def measure_latency(
    paths: dict[str, tuple[Callable[[], socket.socket], bytes]], count: int
) -> dict[str, list[Timings]]:
    """``count`` exchanges per path, interleaved, after 10 unmeasured ones each."""
    sockets = {name: connect() for name, (connect, _) in paths.items()}
    for sock in sockets.values():
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples: dict[str, list[Timings]] = {name: [] for name in paths}
    try:
        for index in range(count + 10):
            for name, (_, request) in paths.items():
                timings = exchange(sockets[name], request)
                if index >= 10:
                    samples[name].append(timings)
    finally:
        for sock in sockets.values():
            sock.close()
    return samples


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if abs(seconds) < 0.01 else f"{seconds * 1000:.1f} ms"


def latency_table(samples: dict[str, list[Timings]]) -> list[str]:
    baseline = samples["direct"]
    lines = [
        "| path | first byte p50 | p99 | first event p50 | whole stream p50 | p99 "
        "| added to first byte (p50 / p99) | added to whole stream (p50) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, values in samples.items():
        first = [v[0] for v in values]
        event = [v[1] for v in values]
        whole = [v[2] for v in values]
        added = "(baseline)"
        added_whole = ""
        if name != "direct":
            added = (
                f"{ms(percentile(first, 0.5) - percentile([b[0] for b in baseline], 0.5))} / "
                f"{ms(percentile(first, 0.99) - percentile([b[0] for b in baseline], 0.99))}"
            )
            added_whole = ms(percentile(whole, 0.5) - percentile([b[2] for b in baseline], 0.5))
        lines.append(
            f"| {LABELS[name]} | {ms(percentile(first, 0.5))} | {ms(percentile(first, 0.99))} "
            f"| {ms(percentile(event, 0.5))} | {ms(percentile(whole, 0.5))} "
            f"| {ms(percentile(whole, 0.99))} | {added} | {added_whole} |"
        )
    return lines


LABELS = {
    "direct": "baseline: scripted model, TCP",
    "socket": "gateway, its Unix socket",
    "relay": "gateway through the worker's relay (TCP -> Unix)",
}


# --- 2. fan-out ----------------------------------------------------------------------------------


def run_claudes(claude: Path, targets: list[tuple[str, str]], directory: Path) -> float:
    """Run one ``claude -p`` per (base URL, key) at once; the makespan in seconds."""
    processes = []
    started = time.monotonic()
    for index, (url, key) in enumerate(targets):
        work = directory / f"work-{index}"
        work.mkdir(parents=True)
        env = claude_env(url, home=directory / f"home-{index}", api_key=key)
        processes.append(
            subprocess.Popen(
                [
                    str(claude),
                    "-p",
                    FANOUT_PROMPT,
                    "--output-format",
                    "json",
                    "--dangerously-skip-permissions",
                ],
                cwd=work,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for process in processes:
        out, err = process.communicate(timeout=300)
        result = json.loads(out) if out.strip().startswith("{") else {}
        if process.returncode != 0 or result.get("subtype") != "success":
            raise RuntimeError(
                f"a claude run failed ({process.returncode}): {out[-300:]} {err[-300:]}"
            )
    return time.monotonic() - started


def bench_fanout(
    claude: Path, layout: Layout, model_url: str, directory: Path, rounds: int
) -> tuple[list[float], list[float]]:
    direct, gated = [], []
    for round_index in range(rounds):
        tokens = [claim_caller(layout, f"fan-{round_index}-{i:02d}") for i in range(FANOUT)]
        relays = RelayProcess(api_socket(layout), FANOUT)
        try:
            order = ("direct", "gateway") if round_index % 2 == 0 else ("gateway", "direct")
            for name in order:
                where = directory / f"fanout-{round_index}-{name}"
                if name == "direct":
                    direct.append(run_claudes(claude, [(model_url, REAL_KEY)] * FANOUT, where))
                else:
                    gated.append(
                        run_claudes(claude, list(zip(relays.urls, tokens, strict=True)), where)
                    )
        finally:
            relays.close()
        for i in range(FANOUT):
            entries = read_ledger(layout, f"fan-{round_index}-{i:02d}")
            if not entries or any(e.outcome != "ok" for e in entries):
                raise RuntimeError(f"task fan-{round_index}-{i:02d}: the ledger shows {entries}")
    return direct, gated


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument("--requests", type=int, help="requests per path (default 200, quick 50)")
    parser.add_argument("--rounds", type=int, help="fan-out rounds (default 2, quick 1)")
    parser.add_argument(
        "--event-delay",
        type=float,
        default=0.001,
        help="seconds between a reply's events (default 0.001)",
    )
    parser.add_argument("--no-fanout", action="store_true", help="skip part 2 (no claude needed)")
    args = parser.parse_args(argv)
    count = args.requests or (50 if args.quick else 200)
    rounds = args.rounds or (1 if args.quick else 2)
    began = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    layout = Layout(directory / "root").ensure()
    model, model_url = start_model(directory, args.event_delay)
    gateway = relays = None
    try:
        gateway = start_gateway(layout, model_url, directory)
        print("# Gateway benchmark\n")
        print(
            f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}"
        )
        print(
            f"- gateway pid {gateway.pid}, RSS at start {rss_mb(gateway.pid)[0]:.0f} MB; "
            f"scripted model at {model_url}\n"
        )
        print(
            f"## Added latency: streamed `POST /v1/messages`, {count} requests per path\n",
            flush=True,
        )
        relays = RelayProcess(api_socket(layout), 1)
        token = claim_caller(layout, "latency")
        sock_path = api_socket(layout)
        samples = measure_latency(
            {
                "direct": (tcp(model_url), request_bytes(REAL_KEY)),
                "socket": (lambda: connect_unix(sock_path, timeout_s=30), request_bytes(token)),
                "relay": (tcp(relays.urls[0]), request_bytes(token)),
            },
            count,
        )
        print("\n".join(latency_table(samples)) + "\n")
        added = percentile([v[0] for v in samples["relay"]], 0.5) - percentile(
            [v[0] for v in samples["direct"]], 0.5
        )
        print(
            f"Goal: under {GOAL_FIRST_BYTE_S * 1000:g} ms added to the first byte (p50, "
            f"through the relay): {'met' if added < GOAL_FIRST_BYTE_S else 'NOT MET'} "
            f"({ms(added)}). Ledger lines for the task: {len(read_ledger(layout, 'latency'))}; "
            f"gateway RSS {rss_mb(gateway.pid)[0]:.0f} MB.\n",
            flush=True,
        )
        relays.close()
        relays = None
        if args.no_fanout:
            return 0
        try:
            claude = find_claude()
        except ClaudeNotFound as error:
            print(f"Fan-out skipped: {error}")
            return 0
        print(f"## Fan-out: {FANOUT} concurrent `claude -p` ({rounds} round(s))\n", flush=True)
        direct, gated = bench_fanout(claude, layout, model_url, directory, rounds)
        current, peak = rss_mb(gateway.pid)
        ratio = statistics.median(gated) / statistics.median(direct)
        print("| path | makespan (median) | rounds | ratio |")
        print("|---|---:|---|---:|")
        print(
            f"| baseline: straight to the scripted model | {statistics.median(direct):.2f} s "
            f"| {', '.join(f'{d:.2f}' for d in direct)} | 1.00x |"
        )
        print(
            f"| each through its relay and the gateway | {statistics.median(gated):.2f} s "
            f"| {', '.join(f'{g:.2f}' for g in gated)} | {ratio:.2f}x |"
        )
        print(
            f"\nGateway after the fan-out: RSS {current:.0f} MB (peak {peak:.0f} MB); "
            f"{FANOUT * rounds} tasks, every ledger line `ok`.\n"
        )
    finally:
        if relays is not None:
            relays.close()
        if gateway is not None:
            stop(gateway)
        stop(model)
        shutil.rmtree(directory, ignore_errors=True)
    print(f"Total run time: {time.monotonic() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
