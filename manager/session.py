"""The manager's Claude Code session, prepared by ``entrypoint.sh`` before ``claude`` starts.

``python -m manager.session --workdir DIR --prompt-out FILE`` writes, for the current user:

- ``~/.claude.json``: onboarding done, ``DIR`` trusted, the API key (if any) approved, so the
  interactive CLI starts straight at its prompt;
- ``~/.claude/settings.json``: permission rules that let the manager run ``orchestrator`` and
  ``spawn-worker`` (and read-only commands) without asking, and keep it from asking otherwise
  for what it was made to do;
- the protocol's directories on the orchestration volume, writable by workers;
- ``~/.config/claude-orchestrator/profiles.yaml``: the built-in worker profiles plus the bind
  mounts in ``$ORCHESTRATOR_WORKER_MOUNTS`` (a local repository), unless a profiles file exists;
- ``FILE``: ``system-prompt.md`` followed by a section on this session (repository, clone,
  worker limit, simulation), for ``claude --append-system-prompt``.

No secret is printed or written anywhere except the last 20 characters of the API key, which is
how Claude Code itself records an approved key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ALLOWED_TOOLS = (
    "Bash(orchestrator:*)",
    "Bash(spawn-worker:*)",
    "Bash(git status:*)",
    "Bash(git log:*)",
    "Bash(git diff:*)",
    "Bash(git show:*)",
    "Bash(git branch:*)",
    "Bash(git fetch:*)",
    "Bash(ls:*)",
    "Read",
    "Glob",
    "Grep",
    "TodoWrite",
)
"""What the manager may do without a permission prompt: its own commands and reading through
Claude Code's own tools (which the deny rules below hold). No shell command that prints a file
(``cat``, ``head``, ``tail``, ``jq``) is allowed: any path would do, its secrets' too."""

SECRET_PATHS = (
    "//run/orchestrator-secrets/**",
    "//tmp/orchestrator-secrets*/**",
    "//proc/**",
    "~/.ssh/**",
    "~/.claude.json",
    "~/.claude/.credentials.json",
    "~/.git-credentials",
)
"""Where the manager's secrets are, or can be read from (``/proc/*/environ``)."""

DENIED_TOOLS = tuple(f"{tool}({path})" for path in SECRET_PATHS for tool in ("Read", "Edit"))
"""What the manager may never do, whatever a prompt or a worker's output asks: deny rules win
over allow rules in every permission mode."""

MOUNTS_ENV = "ORCHESTRATOR_WORKER_MOUNTS"
"""Bind mounts ``HOST:CONTAINER[:ro|rw]`` for every worker, separated by commas."""

DEFAULT_SYSTEM_PROMPT = Path("/opt/claude-orchestrator/system-prompt.md")


def update_json(path: Path, change: Any) -> None:
    """Apply ``change`` to the JSON object in ``path`` (or ``{}``) and write it back, private."""
    data = json.loads(path.read_text()) if path.exists() else {}
    change(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)


def prepare_claude_config(home: Path, workdir: Path, api_key: str | None) -> None:
    """``~/.claude.json``: no onboarding, ``workdir`` trusted, ``api_key`` approved."""

    def change(config: dict[str, Any]) -> None:
        config["hasCompletedOnboarding"] = True
        config["autoUpdates"] = False
        project = config.setdefault("projects", {}).setdefault(str(workdir), {})
        project["hasTrustDialogAccepted"] = True
        project["hasCompletedProjectOnboarding"] = True
        if api_key:
            responses = config.setdefault("customApiKeyResponses", {})
            approved = responses.setdefault("approved", [])
            responses.setdefault("rejected", [])
            if api_key[-20:] not in approved:
                approved.append(api_key[-20:])

    update_json(home / ".claude.json", change)


def prepare_claude_settings(home: Path) -> None:
    """``~/.claude/settings.json``: the manager's allow and deny rules (kept beside any already
    there)."""

    def change(settings: dict[str, Any]) -> None:
        permissions = settings.setdefault("permissions", {})
        allow = permissions.setdefault("allow", [])
        allow.extend(rule for rule in ALLOWED_TOOLS if rule not in allow)
        deny = permissions.setdefault("deny", [])
        deny.extend(rule for rule in DENIED_TOOLS if rule not in deny)

    update_json(home / ".claude" / "settings.json", change)


def worker_mounts(env: Mapping[str, str]) -> list[str]:
    return [spec.strip() for spec in env.get(MOUNTS_ENV, "").split(",") if spec.strip()]


def write_mount_profiles(home: Path, mounts: list[str]) -> Path | None:
    """The built-in profiles plus ``mounts``, as the user's profiles file (JSON is YAML); None
    when there are no mounts or a profiles file exists already."""
    from .profiles import USER_PROFILES, builtin_profiles

    path = Path(str(USER_PROFILES).replace("~", str(home), 1))
    if not mounts or path.exists():
        return None
    document = {
        name: {
            **profile.model_dump(mode="json", exclude={"name"}, exclude_none=True),
            "mounts": [*profile.mounts, *mounts],
        }
        for name, profile in builtin_profiles().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def prepare_volume(root: Path) -> str | None:
    """The protocol's directories on the volume, writable by workers of any uid (so a task file
    can be dropped by hand at once); what went wrong, if anything."""
    from orchestration_protocol import Layout

    previous = os.umask(0)
    try:
        Layout(root).ensure()
    except OSError as error:
        return f"{root} is not writable ({error.strerror}); see `orchestrator doctor`"
    finally:
        os.umask(previous)
    return None


def session_section(env: Mapping[str, str], workdir: Path) -> str:
    """What the manager is told about this session, after system-prompt.md."""
    repo = env.get("REPO_URL") or "(none given)"
    branch = env.get("REPO_BRANCH") or "main"
    lines = [
        "",
        "## This session",
        "",
        f"- Repository: {repo}, branch {branch}; your clone is {workdir} (your working directory).",
        f"- Run at most {env.get('ORCHESTRATOR_MAX_WORKERS') or 4} workers at once.",
        f"- The orchestration volume is mounted at {env.get('ORCHESTRATION_DIR') or '/orchestration'}.",
    ]
    if env.get("ANTHROPIC_MODEL"):
        lines.append(f"- Model: {env['ANTHROPIC_MODEL']} (workers use it too).")
    if env.get("ORCHESTRATOR_SIMULATE") == "1":
        lines.append(
            "- Simulation mode: a scripted model stands in for Claude. Add --simulate to every "
            "`orchestrator plan`, `orchestrator spawn`, `orchestrator run`, "
            "`orchestrator dispatch`, `orchestrator task retry` and `spawn-worker` command."
        )
    return "\n".join(lines) + "\n"


def compose_prompt(system_prompt: Path, env: Mapping[str, str], workdir: Path) -> str:
    base = system_prompt.read_text() if system_prompt.is_file() else ""
    return base.rstrip("\n") + "\n" + session_section(env, workdir)


def prepare(
    home: Path, workdir: Path, system_prompt: Path, env: Mapping[str, str]
) -> tuple[str, Path | None]:
    """Everything above; returns the prompt to append and the profiles file written (if any)."""
    prepare_claude_config(home, workdir, env.get("ANTHROPIC_API_KEY"))
    prepare_claude_settings(home)
    problem = prepare_volume(Path(env.get("ORCHESTRATION_DIR") or "/orchestration"))
    if problem:
        print(f"manager.session: warning: {problem}", file=sys.stderr)
    profiles = write_mount_profiles(home, worker_mounts(env))
    return compose_prompt(system_prompt, env, workdir), profiles


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m manager.session",
        description="Prepare the manager's Claude Code session (settings, trust, prompt).",
    )
    parser.add_argument("--workdir", type=Path, required=True, help="the manager's clone")
    parser.add_argument("--prompt-out", type=Path, required=True, help="write the prompt here")
    parser.add_argument(
        "--system-prompt",
        type=Path,
        default=Path(os.environ.get("ORCHESTRATOR_SYSTEM_PROMPT") or DEFAULT_SYSTEM_PROMPT),
        help="system-prompt.md (default $ORCHESTRATOR_SYSTEM_PROMPT)",
    )
    args = parser.parse_args(argv)
    home = Path.home()
    try:
        prompt, _ = prepare(home, args.workdir.resolve(), args.system_prompt, os.environ)
        args.prompt_out.write_text(prompt)
    except (OSError, ValueError) as error:
        print(f"manager.session: cannot prepare Claude Code's settings: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
