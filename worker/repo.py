"""The runtime's git: the task's clone from the volume's mirror, and keeping what the agent did.

The runtime never runs code the agent could have written. It keeps its own repository in a
private directory (``GIT_DIR``, root-only in a container) and uses the agent's work tree only as
files to read: the agent's ``.git`` (its config, hooks, aliases, filters, fsmonitor) is never
used, every git command runs with system and global config replaced by the runtime's own
(hooks off, fsmonitor off), and before anything is added the tree is checked: no file over the
size limit, no symlink that points out of the clone. Patches and bundles have size limits too.

The repository comes from ``git/<name>.git`` in the volume (the manager's mirror, see
``orchestration_protocol.mirrors``), and the task's branch goes back there; no network and no
credential are needed.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from orchestration_protocol import atomic_write_bytes
from orchestration_protocol.mirrors import task_branch
from orchestration_protocol.tree_limits import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_TOTAL_BYTES,
    ChangeLimits,
    change_problem,
)

from .errors import GitFailed, NoRepository, WorkTreeRefused

MAX_LINK_TARGET = 4096
"""Longest symlink target taken (the kernel's PATH_MAX)."""
MAX_LINK_HOPS = 40
"""Most links one path may go through (the kernel's limit)."""
CREDENTIAL_IN_URL = re.compile(r"(?<=://)[^/@\s]+@")
MiB = 1024 * 1024
NO_TEMPLATE = "--template="
"""Every repository the runtime makes starts empty: no sample hooks, description or excludes
copied from git's templates (files read through the image's filesystem at every task)."""
RUNTIME_GIT_CONFIG = """\
[core]
\thooksPath = /dev/null
\tfsmonitor = false
\tuntrackedCache = false
[safe]
\tdirectory = *
[advice]
\tdetachedHead = false
"""


def redact(text: str) -> str:
    """Hide ``user:password@`` in URLs."""
    return CREDENTIAL_IN_URL.sub("***@", text)


@dataclass(frozen=True)
class Limits:
    """What the runtime agrees to take from a work tree."""

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    """Largest single file that is committed."""
    max_files: int = 200_000
    """Most files the work tree may hold."""
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    """Most bytes the change may hold, every path in full (see ``tree_limits``)."""
    max_patch_bytes: int = 64 * MiB
    """Largest ``changes.patch``."""
    max_bundle_bytes: int = 512 * MiB
    """Largest ``changes.bundle``."""


@dataclass(frozen=True)
class Workspace:
    """Where one attempt works: the runtime's private repository and the agent's work tree."""

    private: Path
    """The runtime's own directory (git dir, git config); the agent cannot read it."""
    agent_root: Path
    """Holds the agent's ``repo/`` and ``home/``; not writable by the agent, so the agent cannot
    swap its work tree for a symlink."""
    author_name: str = "Claude Worker"
    author_email: str = "worker@claude-orchestrator.invalid"

    @property
    def git_dir(self) -> Path:
        return self.private / "repo.git"

    @property
    def work_tree(self) -> Path:
        return self.agent_root / "repo"

    @property
    def base_repo(self) -> Path:
        """The base commit and its history, for the agent to read (see ``prepare``)."""
        return self.agent_root / "base.git"

    @property
    def agent_home(self) -> Path:
        return self.agent_root / "home"

    def env(self, *, work_tree: bool = True) -> dict[str, str]:
        """The environment of every runtime git command: nothing from the agent's repository."""
        config = self.private / "gitconfig"
        if not config.exists():
            config.write_text(RUNTIME_GIT_CONFIG)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.private),
            "XDG_CONFIG_HOME": str(self.private),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(config),
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": self.author_name,
            "GIT_AUTHOR_EMAIL": self.author_email,
            "GIT_COMMITTER_NAME": self.author_name,
            "GIT_COMMITTER_EMAIL": self.author_email,
        }
        if self.git_dir.exists():
            env["GIT_DIR"] = str(self.git_dir)
            if work_tree:
                env["GIT_WORK_TREE"] = str(self.work_tree)
        return env


def git(args: list[str], env: dict[str, str], *, cwd: Path | None = None, check: bool = True) -> str:
    """Run git with the runtime's environment; return stdout; GitFailed (redacted) on failure."""
    completed = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
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


def prepare(
    workspace: Workspace,
    mirror: Path,
    url: str,
    branch: str | None,
    task_id: str,
    agent_owner: tuple[int, int] | None,
    mark: Callable[[str], None] = lambda _step: None,
) -> tuple[str, str]:
    """Clone the mirror once, into the runtime's private repository (sharing the mirror's
    objects), on the task's branch; then give the agent its tree (see :func:`_agent_tree`).
    Return the base commit and the branch. ``mark`` ends the ``clone`` and ``ownership`` steps
    of the attempt's cost line."""
    if not (mirror / "HEAD").is_file():
        raise NoRepository(
            f"The volume holds no mirror of {redact(url)} (expected {mirror}); make it with "
            f"'orchestrator --root {mirror.parent.parent} mirror {redact(url)}', or start "
            "workers with 'orchestrator spawn' or 'spawn-worker', which make it."
        )
    env = workspace.env()
    pick = ["--branch", branch] if branch else []
    try:
        git(["clone", "--quiet", "--no-tags", "--single-branch", *pick, "--shared", "--bare",
             NO_TEMPLATE, str(mirror), str(workspace.git_dir)], env)  # fmt: skip
    except GitFailed as error:
        where = f"branch {branch!r} of " if branch else ""
        raise GitFailed(
            f"Could not start from {where}{redact(url)}: {error}; check the task's branch "
            "(--branch) and the repository."
        ) from error
    env = workspace.env()
    base = _base_commit(env, url, branch)
    name = task_branch(task_id)
    _write_head(workspace.git_dir, name, base)  # a fresh repository of the runtime's own
    git(["read-tree", base], env)  # core.bare stays true: GIT_WORK_TREE gives the work tree
    _publish_base(workspace, name, base)
    mark("clone")
    for path in (workspace.work_tree, workspace.agent_home):
        path.mkdir(mode=0o755)
        if agent_owner is not None:
            os.chown(path, *agent_owner)
    mark("ownership")
    _agent_tree(workspace, name, agent_owner)
    mark("checkout")
    return base, name


def _publish_base(workspace: Workspace, name: str, base: str) -> None:
    """``<agent_root>/base.git``: the base commit and its history, packed from the runtime's
    repository into a bare repository the agent can read and not write (root's, mode 0755, in
    the agent root the agent cannot write either). The runtime never reads it back, and the
    mirror, which the agent cannot reach, is not in it: an agent that rewrites or corrupts
    objects changes only its own ``.git``, which nothing trusted reads."""
    base_repo = workspace.base_repo
    plain = workspace.env(work_tree=False)
    plain.pop("GIT_DIR", None)
    git(["init", "--quiet", "--bare", NO_TEMPLATE, str(base_repo)], plain)
    pack = subprocess.run(
        ["git", "pack-objects", "--quiet", "--revs", str(base_repo / "objects/pack/pack")],
        input=f"{base}\n",
        env=workspace.env(work_tree=False),
        capture_output=True,
        text=True,
        check=False,
    )
    if pack.returncode != 0:
        raise GitFailed(f"git pack-objects failed: {_essence(pack.stderr)}")
    _write_head(base_repo, name, base)


def _write_head(git_dir: Path, name: str, commit: str) -> None:
    """Point ``refs/heads/<name>`` at ``commit`` and ``HEAD`` at that branch, as files: in a
    repository the runtime just made (two git processes fewer per task)."""
    ref = git_dir / "refs/heads" / name
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(f"{commit}\n")
    (git_dir / "HEAD").write_text(f"ref: refs/heads/{name}\n")


def _agent_tree(workspace: Workspace, name: str, agent_owner: tuple[int, int] | None) -> None:
    """The agent's work tree and ``.git``: one ``git clone --shared`` of ``base.git`` run as the
    agent's uid, so every file is the agent's from the start (no chown) and its objects stay in
    the read-only ``base.git`` (no copy). Nothing of the runtime's config reaches that git: no
    global or system config, hooks off."""
    config = workspace.agent_root / "clone.gitconfig"  # root's, 0644: git 2.39 reads
    config.write_text(  # safe.directory from the global config only
        f"[core]\n\thooksPath = /dev/null\n[safe]\n\tdirectory = {workspace.base_repo}\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(workspace.agent_home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(config),
        "GIT_TERMINAL_PROMPT": "0",
    }
    command = [
        "git", "-c", "core.hooksPath=/dev/null", "clone", "--quiet", "--shared", NO_TEMPLATE,
        "--branch", name,
        "--config", f"user.name={workspace.author_name}",
        "--config", f"user.email={workspace.author_email}",
        str(workspace.base_repo), str(workspace.work_tree),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        user=agent_owner[0] if agent_owner else None,
        group=agent_owner[1] if agent_owner else None,
        extra_groups=[] if agent_owner else None,
        umask=0o022 if agent_owner else -1,
    )
    if done.returncode != 0:
        raise GitFailed(f"git clone of the agent's tree failed: {_essence(done.stderr)}")


def _base_commit(env: dict[str, str], url: str, branch: str | None) -> str:
    head = git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], env, check=False).strip()
    if head:
        return head
    if branch:
        raise GitFailed(f"Branch {branch!r} of {redact(url)} has no commit; pick another --branch.")
    raise GitFailed(
        f"The default branch of {redact(url)} has no commit (an empty repository, or HEAD names "
        "a missing branch); name a branch that exists with --branch."
    )


def check_work_tree(workspace: Workspace, limits: Limits) -> None:
    """Refuse a tree the runtime will not read: a file over the limit, too many files or bytes,
    a symlink that lands out of the clone, or a nested repository (git would run ``status`` in a
    submodule whose ``.git`` the agent made, with that repository's config: filters run as the
    runtime). Nothing is read but names, sizes (``lstat``) and link targets. Every path the base
    commit does not hold at the same size counts in full (hard links too), so the total is
    refused before git hashes a byte. No agent process may be left running (see
    ``process.run_supervised``), or this check races with the commit."""
    env = workspace.env()
    listing = git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], env)
    paths = [path for path in listing.split("\0") if path]
    if len(paths) > limits.max_files:
        raise WorkTreeRefused(
            f"The work tree holds {len(paths)} files, over the limit of {limits.max_files}; "
            "nothing was committed."
        )
    tree = _TreeCheck(Path(os.path.realpath(workspace.work_tree)), limits, _base_sizes(env))
    for relative in paths:
        tree.check(relative)


def _base_sizes(env: dict[str, str]) -> dict[str, int]:
    """The size of every file of the base commit (``HEAD`` before the commit), by path."""
    sizes = {}
    for record in git(["ls-tree", "-r", "-z", "-l", "HEAD"], env).split("\0"):
        meta, _, path = record.partition("\t")
        size = meta.split()[-1] if meta else "-"
        if size.isdigit():
            sizes[path] = int(size)
    return sizes


@dataclass
class _TreeCheck:
    """One pass over the work tree's paths (see :func:`check_work_tree`)."""

    root: Path
    """The clone's real path (symlinks resolved)."""
    limits: Limits
    base_sizes: dict[str, int]
    """What the base commit holds, by path: a path at the same size there is not counted."""
    total: int = 0

    def check(self, relative: str) -> None:
        full = self.root / relative
        try:
            info = full.lstat()
        except OSError:
            return  # deleted: a deletion is fine
        if stat.S_ISLNK(info.st_mode):
            _check_link(self.root, relative)
        elif stat.S_ISDIR(info.st_mode) and os.path.lexists(full / ".git"):
            raise WorkTreeRefused(
                f"The work tree holds a nested git repository at {relative.rstrip('/')} (a "
                "submodule's checkout or a .git of its own); the runtime's git would read its "
                "config and run its filters, so nothing was committed."
            )
        elif stat.S_ISREG(info.st_mode):
            self._count(relative, info.st_size)

    def _count(self, relative: str, size: int) -> None:
        if size > self.limits.max_file_bytes:
            raise WorkTreeRefused(
                f"The file {relative} is {size / MiB:.0f} MiB, over the limit of "
                f"{self.limits.max_file_bytes / MiB:.0f} MiB; nothing was committed."
            )
        if self.base_sizes.get(relative) != size:
            self.total += size
        if self.total > self.limits.max_total_bytes:
            raise WorkTreeRefused(
                f"The work tree's changes hold over {self.limits.max_total_bytes / MiB:.0f} MiB "
                "(every path counted in full, hard links too), over the limit; nothing was "
                "committed."
            )


def _check_link(root: Path, relative: str) -> None:
    """Refuse a symlink that lands outside the clone, or in its ``.git``, once resolved against
    the real tree (every link of the chain followed, ``s -> .`` included), whatever its text
    says. Resolution never goes above the clone's root on the way either, so a link that climbs
    out and back in (``../repo/x``) is refused: in another clone of another name it lands
    elsewhere."""
    target = os.readlink(root / relative)
    if len(target) > MAX_LINK_TARGET or _landing(root, relative) is None:
        raise WorkTreeRefused(
            f"The symlink {relative} points out of the clone (to {target[:200]}), or through "
            f"more than {MAX_LINK_HOPS} links; it is not committed, and nothing else was."
        )


def _landing(root: Path, relative: str) -> list[str] | None:
    """The path (components under ``root``) where ``relative`` lands with every symlink
    followed; None when it leaves the root at any step, goes through an absolute link or too
    many links, or lands in ``.git``."""
    pending, hops = list(PurePosixPath(relative).parts), 0
    current: list[str] = []
    while pending:
        part = pending.pop(0)
        if part == "..":
            if not current:
                return None
            current.pop()
        elif part not in ("", "."):
            current.append(part)
            link = root.joinpath(*current)
            if os.path.islink(link):
                target, hops = os.readlink(link), hops + 1
                if os.path.isabs(target) or hops > MAX_LINK_HOPS:
                    return None
                current.pop()
                pending[:0] = PurePosixPath(target).parts
    return None if current[:1] == [".git"] else current


@dataclass
class ChangeSummary:
    """What the work changed, from the base commit to the head commit."""

    head_commit: str
    files_changed: list[str]
    insertions: int
    deletions: int


def commit_all(workspace: Workspace, message: str, base_commit: str) -> ChangeSummary:
    """Commit the work tree as it is now, on the task's branch, in the runtime's repository."""
    env = workspace.env()
    git(["add", "--all"], env)
    if git(["diff", "--cached", "--name-only"], env).strip():
        git(["commit", "--quiet", "--no-verify", "-m", message], env)
    head = git(["rev-parse", "HEAD"], env).strip()
    files, insertions, deletions = [], 0, 0
    for line in git(["diff", "--numstat", base_commit, head], env).splitlines():
        added, removed, path = line.split("\t", 2)
        files.append(path)
        insertions += int(added) if added.isdigit() else 0
        deletions += int(removed) if removed.isdigit() else 0
    return ChangeSummary(head, files, insertions, deletions)


def check_change(workspace: Workspace, base_commit: str, head_commit: str, limits: Limits) -> None:
    """Refuse a commit whose change is over the caps on its uncompressed content (every path in
    full, see ``orchestration_protocol.tree_limits``), before it is bundled or pushed."""
    caps = ChangeLimits(max_file_bytes=limits.max_file_bytes, max_total_bytes=limits.max_total_bytes)
    env = workspace.env(work_tree=False)
    problem = change_problem(["git"], base_commit, head_commit, caps, env)
    if problem:
        raise WorkTreeRefused(f"The commit was refused: {problem}; nothing was bundled or pushed.")


def save_patch(
    workspace: Workspace, base_commit: str, branch: str, target: Path, limits: Limits
) -> Path:
    """Write ``changes.patch`` (base to branch, binary included), within its limit."""
    env = workspace.env(work_tree=False)
    target.mkdir(parents=True, exist_ok=True)
    patch = target / "changes.patch"
    diff = _bounded_output(
        ["diff", "--binary", base_commit, branch], env, limits.max_patch_bytes, "patch"
    )
    atomic_write_bytes(patch, diff)
    return patch


def save_bundle(
    workspace: Workspace, base_commit: str, branch: str, target: Path, limits: Limits
) -> Path | None:
    """Write ``changes.bundle`` (the branch's commits past the base), within its limit; None when
    there is no commit. Made only when the branch could not be pushed into the mirror: the
    manager takes the commits from the mirror first (``manager.git.merge``)."""
    env = workspace.env(work_tree=False)
    count = git(["rev-list", "--count", f"{base_commit}..{branch}"], env).strip()
    if count == "0":
        return None
    scratch = workspace.private / "changes.bundle"
    git(["bundle", "create", "--quiet", str(scratch), f"{base_commit}..{branch}"], env)
    size = scratch.stat().st_size
    if size > limits.max_bundle_bytes:
        raise WorkTreeRefused(
            f"The bundle of the changes is {size / MiB:.0f} MiB, over the limit of "
            f"{limits.max_bundle_bytes / MiB:.0f} MiB; it was not saved."
        )
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(scratch, target / ".changes.bundle.tmp")
    os.replace(target / ".changes.bundle.tmp", target / "changes.bundle")
    return target / "changes.bundle"


def _bounded_output(args: list[str], env: dict[str, str], limit: int, what: str) -> bytes:
    """git's stdout, or WorkTreeRefused as soon as it grows past ``limit`` bytes."""
    process = subprocess.Popen(
        ["git", "-c", "core.hooksPath=/dev/null", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    chunks, size = [], 0
    with process.stdout:
        while chunk := process.stdout.read(1024 * 1024):
            size += len(chunk)
            if size > limit:
                process.kill()
                process.wait()
                raise WorkTreeRefused(
                    f"The {what} is over the limit of {limit / MiB:.0f} MiB; it was not saved."
                )
            chunks.append(chunk)
    if process.wait() != 0:
        raise GitFailed(f"git {args[0]} failed while writing the {what}.")
    return b"".join(chunks)


def push_to_mirror(workspace: Workspace, mirror: Path, branch: str) -> str | None:
    """Push the task branch into the volume's mirror; None on success, else why not."""
    env = workspace.env(work_tree=False)
    try:
        git(["push", "--quiet", "--force", str(mirror), f"refs/heads/{branch}:refs/heads/{branch}"], env)
    except GitFailed as error:
        return str(error)
    return None
