"""A local bare repository standing in for the remote git host."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

IDENTITY = ["-c", "user.name=Test", "-c", "user.email=test@example.invalid"]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def make_remote(directory: Path, files: dict[str, str] | None = None) -> Path:
    """A bare repo with one commit on ``main``, writable by any user (containers run as 1000)."""
    remote = directory / "remote.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    seed = directory / "seed"
    git("init", "--quiet", "--initial-branch=main", str(seed))
    for name, text in (files or {"README.md": "# demo app\n"}).items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(text)
    git("add", ".", cwd=seed)
    git(*IDENTITY, "commit", "--quiet", "-m", "initial", cwd=seed)
    git("push", "--quiet", str(remote), "main", cwd=seed)
    git("config", "core.sharedRepository", "world", cwd=remote)
    for root, dirs, names in os.walk(remote):
        for name in dirs + names:
            os.chmod(Path(root) / name, 0o777)
    os.chmod(remote, 0o777)
    return remote


def branches(remote: Path) -> list[str]:
    return git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=remote).split()


def show(remote: Path, ref: str, path: str) -> str:
    return git("show", f"{ref}:{path}", cwd=remote)
