"""The real model credential: read once at start, added to every forwarded request.

Names, looked up as files in the secrets directory (one file per name), else in the
environment, in Claude Code's own order of preference:

- ``ANTHROPIC_AUTH_TOKEN``: sent as ``Authorization: Bearer``;
- ``ANTHROPIC_API_KEY``: sent as ``x-api-key``;
- ``CLAUDE_CODE_OAUTH_TOKEN``: sent as ``Authorization: Bearer`` with ``oauth-2025-04-20``
  appended to ``anthropic-beta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

OAUTH_BETA = "oauth-2025-04-20"
CREDENTIAL_NAMES = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")


class UpstreamCredential(Protocol):
    """What the upstream client needs of a credential (Anthropic, AWS or Vertex)."""

    @property
    def name(self) -> str:
        """The name it was read under (never the secret)."""
        ...

    def apply(self, headers: dict[str, str]) -> None:
        """Add what goes with every request to ``headers`` (lower-case names)."""

    def sign(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """The headers to send this time (a signature is made per send; else ``headers``)."""
        ...


@dataclass(frozen=True)
class Credential:
    """One credential and how it is presented upstream. ``repr`` never shows the secret."""

    name: str
    """Which name it was read under (e.g. ``ANTHROPIC_API_KEY``)."""
    secret: str
    """The secret itself."""

    def __repr__(self) -> str:
        return f"Credential(name={self.name!r}, secret=<{len(self.secret)} chars>)"

    __str__ = __repr__

    def apply(self, headers: dict[str, str]) -> None:
        """Add the credential to outgoing ``headers`` (lower-case names)."""
        if self.name == "ANTHROPIC_API_KEY":
            headers["x-api-key"] = self.secret
            return
        headers["authorization"] = f"Bearer {self.secret}"
        if self.name == "CLAUDE_CODE_OAUTH_TOKEN":
            betas = [b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()]
            if OAUTH_BETA not in betas:
                betas.append(OAUTH_BETA)
            headers["anthropic-beta"] = ",".join(betas)

    def sign(self, method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        """No per-send signature: ``headers`` as they are."""
        return headers


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
        return ""


def read_credential(secrets_dir: Path, env: Mapping[str, str]) -> Credential | None:
    """The first credential found (files before the environment, per name in order); None when
    there is none (the gateway still serves the egress proxy and refuses model requests)."""
    for name in CREDENTIAL_NAMES:
        secret = _read_file(secrets_dir / name) or env.get(name, "").strip()
        if secret:
            return Credential(name, secret)
    return None


def no_credential_message() -> str:
    """What a model request is told when the gateway holds no credential."""
    return (
        "the gateway holds no model credential; give the manager CLAUDE_CODE_OAUTH_TOKEN "
        "(claude setup-token) or ANTHROPIC_API_KEY, or run with --simulate"
    )
