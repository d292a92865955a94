"""Debian's Podman 4.3 runs the worker image as root with the worker's hardening options, once
its resource limits are no higher than this host's hard limits."""

from __future__ import annotations

import resource
import shutil
import subprocess

import pytest

from tests.conftest import require

pytestmark = [pytest.mark.podman, pytest.mark.docker, pytest.mark.slow]

IMAGE = "claude-orchestrator-base:bookworm"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def podman_image() -> str:
    """The image in Podman's store, copied from Docker's when it is not there yet."""
    require(shutil.which("podman") is not None, "no podman: apt-get install podman")
    if _run("podman", "image", "exists", IMAGE).returncode != 0:
        probe = _run("docker", "image", "inspect", IMAGE)
        require(probe.returncode == 0, f"no image {IMAGE}: run scripts/build-images.sh --offline")
        with subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE) as saved:
            subprocess.run(["podman", "load"], stdin=saved.stdout, capture_output=True, check=True)
        assert saved.returncode == 0
    return IMAGE


def test_podman_runs_the_image_hardened(podman_image: str) -> None:
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    done = _run(
        "podman", "run", "--rm", "--network", "none",
        # Podman's defaults (nofile 1048576, nproc = host's) fail here with "error setting
        # rlimit type 7/6: operation not permitted": root lacks CAP_SYS_RESOURCE.
        "--ulimit", f"nofile={files}:{files}", "--ulimit", "nproc=4096:4096",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only",
        "--memory", "256m", "--pids-limit", "64", "--user", "1000:1000",
        podman_image, "sh", "-c", "id -u; grep CapEff /proc/self/status",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "1000"
    assert lines[1].split() == ["CapEff:", "0000000000000000"]
