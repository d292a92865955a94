"""git with the manager's own credentials: they never reach a worker, an argument or a file.

An SSH key (``GIT_SSH_KEY``) is written to a private temp file used through
``GIT_SSH_COMMAND``; an HTTPS token (``GIT_TOKEN``) reaches git through a credential helper that
reads it from the git process's environment, configured by ``GIT_CONFIG_*`` variables (not the
command line, not a config file). Without either, git uses the manager's own configuration (e.g.
what ``entrypoint.sh`` set up, or a person's ssh-agent on a host). Every text git prints passes
through :meth:`GitAccess.redact` before anyone sees it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..credentials import redact as redact_secrets

CREDENTIAL_IN_URL = re.compile(r"(?<=://)[^/@\s]+@")
TOKEN_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    "echo username=${GIT_TOKEN_USER:-x-access-token}; echo password=$GIT_TOKEN; }; f"
)
GIT_UMASK = 0o022
"""What git creates is the manager's and readable by all, whatever umask the CLI set for the
protocol's directories; workers' runtimes (root with DAC_OVERRIDE) still write to the mirror."""
GIT_TIMEOUT_S = 900.0
"""Longest a git command may take (a clone of a big repository over a slow link)."""


def redact_url(text: str) -> str:
    """``text`` with every ``user:password@`` in a URL replaced by ``***@``."""
    return CREDENTIAL_IN_URL.sub("***@", text)


def strip_credentials(url: str) -> str:
    """``url`` without its ``user:password@`` part (what may be written down)."""
    return CREDENTIAL_IN_URL.sub("", url)


class GitAccess:
    """The environment of the manager's git commands, and the runner that uses it."""

    def __init__(self, scratch: Path, secrets: Mapping[str, str]) -> None:
        self.secrets = {
            name: value for name, value in secrets.items() if name in ("GIT_SSH_KEY", "GIT_TOKEN")
        }
        self.env = {"GIT_TERMINAL_PROMPT": "0", "GIT_MERGE_AUTOEDIT": "no"}
        if key := self.secrets.get("GIT_SSH_KEY"):
            self.env["GIT_SSH_COMMAND"] = _ssh_command(_write_private(scratch / "ssh_key", key))
        if token := self.secrets.get("GIT_TOKEN"):
            self.env["GIT_TOKEN"] = token
            self.env.update(_config_env({"credential.helper": ["", TOKEN_HELPER]}))

    def run(
        self, *args: str, cwd: Path | None = None, timeout_s: float = GIT_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run git with the credentials; never raises for git's own failure."""
        try:
            return subprocess.run(
                ["git", *args],
                cwd=cwd,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout_s,
                umask=GIT_UMASK,
            )
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(
                ["git", *args], 124, "", f"fatal: git {args[0]} took more than {timeout_s:g} s"
            )

    def redact(self, text: str) -> str:
        """``text`` without credentials: neither in URLs nor the key's or token's text."""
        return redact_secrets(redact_url(text), self.secrets)

    def said(self, done: subprocess.CompletedProcess[str]) -> str:
        """What went wrong, on one line, credentials hidden: git's ``fatal:`` line, else what the
        remote said and why it rejected a ref, else the ``error:`` or last line."""
        lines = [line.strip() for line in (done.stderr or done.stdout or "").splitlines()]
        lines = [line for line in lines if line]
        fatal = [line.removeprefix("fatal: ") for line in lines if line.startswith("fatal:")]
        if (
            fatal
            and fatal[0].startswith("Could not read from remote")
            and lines[0] != f"fatal: {fatal[0]}"
        ):
            fatal = [lines[0]]  # what ssh said (refused, unknown host, permission denied) is first
        remote = [
            line.removeprefix("remote:").strip() for line in lines if line.startswith("remote:")
        ]
        rejected = [line.removeprefix("! ") for line in lines if line.startswith("! ")]
        errors = [line.removeprefix("error: ") for line in lines if line.startswith("error:")]
        parts = (
            fatal[:1] or [part for part in remote + rejected if part] or errors[:1] or lines[-1:]
        )
        essence = "; ".join(parts) or f"exit code {done.returncode}"
        return self.redact(essence[:300].rstrip("."))


@contextlib.contextmanager
def git_access(secrets: Mapping[str, str]) -> Iterator[GitAccess]:
    """A :class:`GitAccess` whose key file lives in a private temp directory, removed after."""
    with tempfile.TemporaryDirectory(prefix="orchestrator-git-") as scratch:
        yield GitAccess(Path(scratch), secrets)


def _write_private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text.strip() + "\n")
    return path


def _ssh_command(key_file: Path) -> str:
    return (
        f"ssh -i {shlex.quote(str(key_file))} -o IdentitiesOnly=yes -o BatchMode=yes "
        "-o StrictHostKeyChecking=accept-new"
    )


def _config_env(settings: dict[str, list[str]]) -> dict[str, str]:
    """``GIT_CONFIG_COUNT``/``KEY_n``/``VALUE_n`` for ``settings``, after any already set."""
    start = int(os.environ.get("GIT_CONFIG_COUNT") or 0)
    env: dict[str, str] = {}
    index = start
    for key, values in settings.items():
        for value in values:
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
            index += 1
    env["GIT_CONFIG_COUNT"] = str(index)
    return env
