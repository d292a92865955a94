"""Preparing a run of the real ``claude`` binary against the scripted model (finding the
binary is the worker's: :mod:`worker.claude_binary`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

TEST_API_KEY = "sk-ant-api03-scripted-model-test-key-0123456789abcdefghij"
"""A fake API key for runs against the scripted model (it accepts any key)."""


def claude_env(
    base_url: str,
    home: Path,
    *,
    api_key: str = TEST_API_KEY,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for a ``claude`` run against the scripted model at ``base_url``.

    ``home`` becomes ``HOME`` (keep the real ``~/.claude`` clean). Credentials and provider
    settings of ``base`` (default ``os.environ``) are dropped so the run cannot reach a real
    service; background traffic is switched off; ``IS_SANDBOX=1`` lets root use
    ``--dangerously-skip-permissions``.
    """
    dropped = ("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDE_CONFIG_DIR", "AWS_", "GOOGLE_", "VERTEX_")
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith(dropped)}
    env.update(
        HOME=str(home),
        ANTHROPIC_BASE_URL=base_url,
        ANTHROPIC_API_KEY=api_key,
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        IS_SANDBOX="1",
    )
    return env


def prepare_claude_home(
    home: Path, *, trusted_dirs: Iterable[Path] = (), api_key: str = TEST_API_KEY
) -> None:
    """Make ``home`` ready for *interactive* ``claude``: onboarding done, ``trusted_dirs``
    trusted, ``api_key`` approved (``~/.claude.json``), and the bypass-permissions warning
    accepted (``~/.claude/settings.json``). ``claude -p`` needs none of it."""
    config_path = home / ".claude.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    config["hasCompletedOnboarding"] = True
    responses = config.setdefault("customApiKeyResponses", {"approved": [], "rejected": []})
    if api_key[-20:] not in responses.setdefault("approved", []):
        responses["approved"].append(api_key[-20:])
    projects = config.setdefault("projects", {})
    for folder in trusted_dirs:
        projects.setdefault(str(Path(folder).resolve()), {})["hasTrustDialogAccepted"] = True
    home.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=2))
    settings_path = home / ".claude" / "settings.json"
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    settings["skipDangerousModePermissionPrompt"] = True
    settings_path.write_text(json.dumps(settings, indent=2))
