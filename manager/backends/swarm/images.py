"""Which node of the swarm lacks which image: a manager sees only its own engine's images, so
``doctor`` asks each ready node with a probe, a one-off ``replicated-job`` of that image pinned to
the node (``true`` as its command, never pulled: ``--no-resolve-image``'s equivalent, the
image as named). A probe the node rejects for its image names the node and the image."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from typing import Any

from ...polling import poll_until
from ..base import LABEL_ROLE, LABEL_ROOT

ROLE_PROBE = "image-probe"
PROBE_S = 60.0
DONE = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned"})


@dataclass(frozen=True)
class NodeImage:
    """What one probe found."""

    node: str
    """The node's id."""
    address: str
    """The node's address in the swarm (nodes may share a hostname)."""
    image: str
    """The image probed."""
    present: bool | None
    """Whether the node ran the image; None when the probe did not end in time."""
    error: str = ""
    """Swarm's words when the node could not run it."""


def ready_nodes(client: Any) -> list[dict[str, Any]]:
    return [
        node for node in client.api.nodes()
        if (node.get("Status") or {}).get("State") == "ready"
        and (node.get("Spec") or {}).get("Availability") == "active"
    ]


def probe_images(client: Any, root_label: str, images: list[str]) -> list[NodeImage]:
    """Run one probe per ready node and image at once; what each found."""
    token = secrets.token_hex(4)
    probes: dict[str, tuple[dict[str, Any], str]] = {}
    for node in ready_nodes(client):
        for number, image in enumerate(images):
            name = f"orchestrator-probe-{token}-{node['ID'][:12]}-{number}"
            client.api.create_service(
                {"ContainerSpec": {"Image": image, "Command": ["true"]},
                 "RestartPolicy": {"Condition": "none"},
                 "Placement": {"Constraints": [f"node.id=={node['ID']}"]}},
                name=name,
                labels={LABEL_ROLE: ROLE_PROBE, LABEL_ROOT: root_label},
                mode={"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
            )
            probes[name] = (node, image)
    states: dict[str, dict[str, Any]] = {}

    def ended() -> bool:
        for name in probes:
            tasks = client.api.tasks(filters={"service": name})
            if tasks:
                states[name] = (max(tasks, key=lambda t: t.get("CreatedAt", "")).get("Status") or {})
        return all(states.get(name, {}).get("State") in DONE for name in probes)

    try:
        poll_until(ended, timeout_s=PROBE_S, interval_s=0.5)
    finally:
        for name in probes:
            with contextlib.suppress(Exception):
                client.api.remove_service(name)
    return [_found(node, image, states.get(name, {})) for name, (node, image) in probes.items()]


def _found(node: dict[str, Any], image: str, status: dict[str, Any]) -> NodeImage:
    address = str((node.get("Status") or {}).get("Addr", "?"))
    state = status.get("State")
    if state not in DONE:
        return NodeImage(node["ID"], address, image, None)
    return NodeImage(node["ID"], address, image, state == "complete", str(status.get("Err") or ""))


def missing_sentence(found: list[NodeImage]) -> str | None:
    """One sentence naming each node that lacks an image, with the fix; None when none does."""
    lacking = [f for f in found if f.present is False]
    unknown = [f for f in found if f.present is None]
    if not lacking and not unknown:
        return None
    parts = [f"node {f.node[:12]} ({f.address}) lacks {f.image}" for f in lacking]
    parts += [f"node {f.node[:12]} ({f.address}) did not answer for {f.image}" for f in unknown]
    return (
        f"{'; '.join(parts)}: load it there ('docker save IMAGE | docker -H NODE load'), push it "
        "to a registry every node pulls from, or keep the profile off that node (placement)."
    )
