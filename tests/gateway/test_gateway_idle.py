"""The gateway's idle stop: a real gateway process on a real root stops itself (exit 0) once no
caller token is on file and no worker beats, and not while one is."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from orchestration_protocol import Layout
from orchestration_protocol.gateway import api_socket, callers_dir

GATEWAY = [sys.executable, "-m", "gateway"]


def wait_for_socket(path: Path, gateway: subprocess.Popen[bytes]) -> None:
    while not path.exists():
        assert gateway.poll() is None, "the gateway ended before it listened"
        time.sleep(0.05)


def start(layout: Layout, idle_s: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "GATEWAY_IDLE_STOP_S": idle_s}
    env.pop("ANTHROPIC_API_KEY", None)
    return subprocess.Popen(
        [*GATEWAY, "--root", str(layout.root), "--upstream", "http://127.0.0.1:9"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_an_idle_gateway_stops_itself(layout: Layout) -> None:
    with start(layout, "1") as gateway:
        try:
            assert gateway.wait(timeout=120) == 0
        finally:
            gateway.kill()
        assert gateway.stderr is not None
        assert b"no caller and no running worker" in gateway.stderr.read()
    assert not api_socket(layout).exists()


def test_a_caller_on_file_keeps_it_up(layout: Layout, tmp_path: Path) -> None:
    callers_dir(layout).mkdir(parents=True, exist_ok=True)
    (callers_dir(layout) / "digest.json").write_text("{}")
    with start(layout, "1") as gateway:
        try:
            wait_for_socket(api_socket(layout), gateway)
            with contextlib.suppress(subprocess.TimeoutExpired):
                gateway.wait(timeout=4)  # several idle periods
            assert gateway.poll() is None
            (callers_dir(layout) / "digest.json").unlink()
            assert gateway.wait(timeout=120) == 0
        finally:
            gateway.kill()
