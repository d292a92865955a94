"""Which credentials workers get, and whether there are any.

Secrets are read like the worker reads them (``orchestration_protocol.contract.read_secret``): a file of that
name in ``$ORCHESTRATOR_SECRETS_DIR``, else the manager's environment. They travel to workers as
files only; :func:`redact` keeps their values out of anything the manager writes or prints.
"""

from __future__ import annotations

from orchestration_protocol.contract import SECRET_NAMES, read_secret

from .errors import CredentialsMissing

MODEL_SECRETS = ("CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")


def collect_secrets() -> dict[str, str]:
    """Every secret the manager has, by name."""
    return {name: value for name in SECRET_NAMES if (value := read_secret(name))}


def has_model_credentials(secrets: dict[str, str], switches: list[str]) -> bool:
    """True when Claude Code could authenticate: a token or key, or one of the settings' model
    ``switches`` (Bedrock, Vertex or a base URL)."""
    return any(secrets.get(name) for name in MODEL_SECRETS) or bool(switches)


def require_model_credentials(secrets: dict[str, str], switches: list[str]) -> None:
    """Raise CredentialsMissing (one sentence with the fix) when there are none."""
    if not has_model_credentials(secrets, switches):
        raise CredentialsMissing(
            "No Claude credentials found: set CLAUDE_CODE_OAUTH_TOKEN (make one with 'claude "
            "setup-token') or ANTHROPIC_API_KEY, or pass --simulate for a dry run with the "
            "scripted model."
        )


def redact(text: str, secrets: dict[str, str]) -> str:
    """``text`` with every secret value (6 characters or more) replaced by ``***``."""
    for value in secrets.values():
        if len(value) >= 6:
            text = text.replace(value, "***")
    return text
