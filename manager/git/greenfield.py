"""Work with no repository: an empty one kept in the volume, and exporting what was merged.

``orchestrator run`` with no ``--repo`` (and no ``$REPO_URL``) starts from
``git/greenfield/<name>.git``: a bare repository holding one empty commit on ``main``, made by
the manager beside the mirrors. It is the tasks' ``repo``: the manager mirrors it like any remote,
workers clone the mirror and push their branches into it. :func:`integrate` merges the tasks in a
throwaway clone of the mirror and pushes ``orchestrator/integration`` into the mirror;
:func:`export_tree` writes that branch to ``--output-dir`` as a git clone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from orchestration_protocol import Layout
from orchestration_protocol.mirrors import mirror_dir, mirrors_dir

from ..errors import BadInput, ManagerError
from .merge import DEFAULT_INTEGRATION_BRANCH, MergeReport, merge_tasks

GREENFIELD_DIR = "greenfield"
IDENTITY = ("-c", "user.name=Claude Orchestrator",
            "-c", "user.email=orchestrator@claude-orchestrator.invalid")


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *IDENTITY, *args], cwd=cwd, capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())[:300]
        raise ManagerError(f"git {args[0]} failed ({said}); see 'orchestrator doctor'.")
    return done.stdout.strip()


def greenfield_name(request: str) -> str:
    """``<first words of the request>-<time>``: one new repository per run."""
    words = re.findall(r"[a-z0-9]+", request.lower())[:4]
    return f"{'-'.join(words) or 'project'}-{time.strftime('%Y%m%d-%H%M%S')}"


def create_greenfield(layout: Layout, name: str, branch: str = "main") -> str:
    """Make ``git/greenfield/<name>.git`` with one empty commit on ``branch``; its path, which
    serves as the tasks' repository URL."""
    target = mirrors_dir(layout) / GREENFIELD_DIR / f"{name}.git"
    if target.exists():
        return str(target)
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="orchestrator-greenfield-") as work:
        _git("init", "--quiet", f"--initial-branch={branch}", work)
        _git("commit", "--quiet", "--allow-empty", "-m", "Start from an empty repository",
             cwd=Path(work))
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.rmtree(temp, ignore_errors=True)
        _git("clone", "--quiet", "--bare", work, str(temp))
        os.rename(temp, target)
    return str(target)


def integrate(layout: Layout, url: str, task_ids: list[str], branch: str) -> tuple[MergeReport, Path]:
    """Merge the tasks in a throwaway clone of the volume's mirror of ``url`` and push
    ``orchestrator/integration`` into that mirror; the report and the clone (caller removes)."""
    mirror = mirror_dir(layout, url)
    clone = Path(tempfile.mkdtemp(prefix="orchestrator-integrate-"))
    _git("clone", "--quiet", "--branch", branch, str(mirror), str(clone / "repo"))
    repo = clone / "repo"
    report = merge_tasks(layout, repo, task_ids, push=True, repo_url=url)
    return report, repo


def check_output_dir(output_dir: Path) -> None:
    """BadInput (one sentence) unless ``output_dir`` is new or an empty directory."""
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise BadInput(f"--output-dir {output_dir} is not an empty directory; give a new or empty one.")


def export_tree(clone: Path, output_dir: Path, branch: str = DEFAULT_INTEGRATION_BRANCH) -> Path:
    """Write ``branch`` of ``clone`` to ``output_dir`` as a git repository on ``main``."""
    check_output_dir(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    _git("clone", "--quiet", "--branch", branch, str(clone), str(output_dir))
    _git("branch", "--quiet", "-M", "main", cwd=output_dir)
    _git("remote", "remove", "origin", cwd=output_dir)
    return output_dir
