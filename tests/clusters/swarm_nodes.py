"""The ``swarm_nodes`` fixture: two extra Docker engines in network namespaces of their own,
formed into one Swarm by ``scripts/engines/swarm-nodes.sh`` (node2 manager, node3 worker)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "engines" / "swarm-nodes.sh"
IMAGE = os.environ.get("SWARM_NODES_TEST_IMAGE", "claude-orchestrator-base:bookworm")
TOOLS = ("ip", "iptables", "nsenter", "dockerd", "docker")


@dataclass(frozen=True)
class SwarmNode:
    """One engine of the test swarm."""

    name: str
    """Its network namespace's name, e.g. ``orch-node2``."""
    socket: str
    """The engine's API address, ``unix:///run/<name>.sock``."""
    address: str
    """Its address on the test bridge (the Swarm advertise address)."""


@dataclass(frozen=True)
class SwarmNodes:
    """The two-node swarm the script made, and where both nodes see the same files."""

    manager: SwarmNode
    """The node that ran ``swarm init`` (the only manager)."""
    worker: SwarmNode
    """The node that joined as a worker."""
    shared: Path
    """A host directory both engines bind-mount at this same path: the stand-in for NFS."""
    image: str
    """An image loaded into both nodes."""

    def docker(self, node: SwarmNode, *args: str, check: bool = True) -> str:
        """Run the docker CLI against ``node``; returns stdout."""
        done = subprocess.run(
            ["docker", "-H", node.socket, *args], capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on {node.name}: {done.stderr.strip()}")
        return done.stdout


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, check=False)


def _node(number: int) -> SwarmNode:
    name = f"orch-node{number}"
    return SwarmNode(name, f"unix:///run/{name}.sock", f"10.99.0.{number}")


@pytest.fixture(scope="session")
def swarm_nodes() -> Iterator[SwarmNodes]:
    """Bring the two nodes up (or reuse them when ``.ci/run`` already did) and tear down at the
    end what this fixture brought up."""
    require(os.geteuid() == 0, "the swarm nodes need root (namespaces, a bridge, dockerds)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    require(not missing, f"missing {', '.join(missing)}: apt-get install iproute2 iptables")
    probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False)
    require(probe.returncode == 0, f"no image {IMAGE}: run scripts/build-images.sh --offline")
    was_up = _script("status").returncode == 0
    started = _script("up", IMAGE)
    if started.returncode != 0:
        _script("down")
        pytest.fail(f"swarm-nodes.sh up failed: {started.stderr.strip()}")
    shared = Path(os.environ.get("SWARM_NODES_STATE", "/var/lib/orch-nodes")) / "shared"
    try:
        yield SwarmNodes(_node(2), _node(3), shared, IMAGE)
    finally:
        if not was_up:
            _script("down")
