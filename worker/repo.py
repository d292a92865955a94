"""The task's git clone: clone with credentials, branch, commit, measure, save, push.

Credentials never appear in a command line or a message: an SSH key is written to a private
temp file used through ``GIT_SSH_COMMAND``; an HTTPS token reaches git through a credential
helper that reads it from the environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GitFailed

BRANCH_PREFIX = "orchestrator/"
CREDENTIAL_IN_URL = re.compile(r"(?<=://)[^/@\s]+@")
TOKEN_HELPER = (
    "!f() { echo username=${GIT_TOKEN_USER:-x-access-token}; echo password=$GIT_TOKEN; }; f"
)


def redact(text: str) -> str:
    """Hide ``user:password@`` in URLs."""
    return CREDENTIAL_IN_URL.sub("***@", text)


def task_branch(task_id: str) -> str:
    return f"{BRANCH_PREFIX}{task_id}"


@dataclass
class GitAccess:
    """Environment for git commands: identity and credentials."""

    scratch: Path
    """A private directory for the key file and known_hosts."""
    ssh_key: str | None = None
    """A private key's text, for SSH remotes."""
    token: str | None = None
    """An HTTPS token, for HTTPS remotes."""
    author_name: str = "Claude Worker"
    author_email: str = "worker@claude-orchestrator.invalid"
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        env = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": self.author_name,
            "GIT_AUTHOR_EMAIL": self.author_email,
            "GIT_COMMITTER_NAME": self.author_name,
            "GIT_COMMITTER_EMAIL": self.author_email,
        }
        if self.ssh_key:
            key_file = self.scratch / "ssh_key"
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.ssh_key.strip() + "\n")
            known_hosts = self.scratch / "known_hosts"
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {key_file} -o IdentitiesOnly=yes -o BatchMode=yes "
                f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known_hosts}"
            )
        # A worker's own git config: trusts a local remote bind-mounted from the host (owned by
        # another uid; git only honours safe.directory from global config) and, with a token,
        # answers HTTPS credential prompts from the environment.
        config = "[safe]\n\tdirectory = *\n"
        if self.token:
            env["GIT_TOKEN"] = self.token
            config += f'[credential]\n\thelper = "{TOKEN_HELPER}"\n'
        global_config = self.scratch / "gitconfig"
        global_config.write_text(config)
        env["GIT_CONFIG_GLOBAL"] = str(global_config)
        self.env = env


def git(args: list[str], *, cwd: Path | None, access: GitAccess, check: bool = True) -> str:
    """Run git; return stdout; raise GitFailed (credentials redacted) when it fails."""
    env = {**os.environ, **access.env}
    completed = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if check and completed.returncode != 0:
        raise GitFailed(
            f"git {args[0]} failed: {redact(_essence(completed.stderr or completed.stdout))}"
        )
    return completed.stdout


def _essence(output: str) -> str:
    """The line of git's output that says what went wrong."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line.removeprefix("fatal: ").removeprefix("error: ")
    return lines[-1] if lines else "no output"


def clone(url: str, branch: str | None, target: Path, access: GitAccess) -> str:
    """Clone ``url`` (at ``branch``) into ``target``; return the base commit."""
    args = ["clone", "--quiet", "--no-tags"]
    if branch:
        args += ["--branch", branch]
    try:
        git([*args, url, str(target)], cwd=None, access=access)
    except GitFailed as error:
        raise GitFailed(
            f"Could not clone {redact(url)}: {error}; check the URL, branch and key."
        ) from error
    return git(["rev-parse", "HEAD"], cwd=target, access=access).strip()


def start_branch(clone_dir: Path, task_id: str, access: GitAccess) -> str:
    branch = task_branch(task_id)
    git(["checkout", "--quiet", "-B", branch], cwd=clone_dir, access=access)
    return branch


@dataclass
class ChangeSummary:
    """What the work changed, from the base commit to the head commit."""

    head_commit: str
    files_changed: list[str]
    insertions: int
    deletions: int

    @property
    def changed(self) -> bool:
        return bool(self.files_changed)


def commit_all(clone_dir: Path, message: str, base_commit: str, access: GitAccess) -> ChangeSummary:
    """Commit every change in the work tree (also when the agent committed some itself)."""
    git(["add", "--all"], cwd=clone_dir, access=access)
    staged = git(["diff", "--cached", "--name-only"], cwd=clone_dir, access=access).strip()
    if staged:
        git(["commit", "--quiet", "--no-verify", "-m", message], cwd=clone_dir, access=access)
    head = git(["rev-parse", "HEAD"], cwd=clone_dir, access=access).strip()
    files, insertions, deletions = [], 0, 0
    numstat = git(["diff", "--numstat", base_commit, head], cwd=clone_dir, access=access)
    for line in numstat.splitlines():
        added, removed, path = line.split("\t", 2)
        files.append(path)
        insertions += int(added) if added.isdigit() else 0
        deletions += int(removed) if removed.isdigit() else 0
    return ChangeSummary(head, files, insertions, deletions)


def save_artifacts(
    clone_dir: Path, base_commit: str, branch: str, target: Path, access: GitAccess
) -> tuple[Path, Path | None]:
    """Write ``changes.patch`` (always) and ``changes.bundle`` (when there are commits)."""
    target.mkdir(parents=True, exist_ok=True)
    patch = target / "changes.patch"
    diff = git(["diff", "--binary", base_commit, branch], cwd=clone_dir, access=access)
    _replace(patch, diff.encode())
    if (
        git(
            ["rev-list", "--count", f"{base_commit}..{branch}"], cwd=clone_dir, access=access
        ).strip()
        == "0"
    ):
        return patch, None
    bundle = target / "changes.bundle"
    with tempfile.NamedTemporaryFile(dir=target, prefix=".bundle-", delete=False) as temp:
        temp_path = Path(temp.name)
    git(
        ["bundle", "create", "--quiet", str(temp_path), f"{base_commit}..{branch}"],
        cwd=clone_dir,
        access=access,
    )
    os.replace(temp_path, bundle)
    return patch, bundle


def push(clone_dir: Path, branch: str, access: GitAccess) -> str | None:
    """Push the branch to origin; None on success, else why it could not (not an error)."""
    try:
        git(
            ["push", "--quiet", "--force", "origin", f"{branch}:{branch}"],
            cwd=clone_dir,
            access=access,
        )
    except GitFailed as error:
        return str(error)
    return None


def _replace(path: Path, data: bytes) -> None:
    from orchestration_protocol import atomic_write_bytes

    atomic_write_bytes(path, data)
