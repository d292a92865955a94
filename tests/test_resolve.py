"""A resolver's git with real git and the real claude binary against the scripted model: the
conflicting branch merged in with markers, the agent's resolution judged by git state (no
marker left, a merge commit with both parents) and by the check."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from manager.git.mirror import ensure_mirror
from orchestration_protocol import Layout
from orchestration_protocol.checkconfig import ResolvedCheck
from orchestration_protocol.claude_cli import ClaudeNotFound, find_claude
from orchestration_protocol.repair_prompt import resolve_prompt
from scripted_model import ScriptedModelServer, claude_env, load_scenarios
from tests.conftest import require
from tests.gitrepo import IDENTITY, git, make_remote
from worker import repo
from worker.checks import check_environment, run_check
from worker.errors import GitFailed, WorkTreeRefused
from worker.resolve import commit_merge, conflict_markers, parents_of, start_merge

LIMITS = repo.Limits()


def conflicting_mirror(tmp_path: Path) -> tuple[Path, Path]:
    """A mirror whose main and ``orchestrator/b`` both changed the same line of settings.py."""
    remote = make_remote(tmp_path, {"settings.py": "THEME = 'light'\n",
                                    "test_settings.py": TEST})
    seed = tmp_path / "seed"
    git("checkout", "-qb", "orchestrator/b", cwd=seed)
    (seed / "settings.py").write_text("THEME = 'light'\nEXPORT = True\n")
    git(*IDENTITY, "commit", "-qam", "export", cwd=seed)
    git("checkout", "-q", "main", cwd=seed)
    (seed / "settings.py").write_text("THEME = 'light'\nSTORAGE = 'localStorage'\n")
    git(*IDENTITY, "commit", "-qam", "storage", cwd=seed)
    git("push", "-q", str(remote), "main", "orchestrator/b", cwd=seed)
    mirror = ensure_mirror(Layout(tmp_path / "volume").ensure(), str(remote), credentials={})
    return mirror, remote


TEST = ("import unittest\n\nimport settings\n\n\nclass T(unittest.TestCase):\n"
        "    def test_both(self):\n"
        "        self.assertTrue(getattr(settings, 'EXPORT', False))\n"
        "        self.assertEqual(getattr(settings, 'STORAGE', None), 'localStorage')\n")


def workspace_on_main(tmp_path: Path, mirror: Path, remote: Path) -> repo.Workspace:
    workspace = repo.Workspace(private=tmp_path / "private", agent_root=tmp_path / "agent")
    workspace.private.mkdir()
    workspace.agent_root.mkdir()
    repo.prepare(workspace, mirror, str(remote), "main", "fix", None)
    return workspace


def test_markers_left_are_refused_and_a_missing_branch_is_named(tmp_path: Path) -> None:
    mirror, remote = conflicting_mirror(tmp_path)
    workspace = workspace_on_main(tmp_path, mirror, remote)
    assert start_merge(workspace, mirror, "orchestrator/b", None) == ["settings.py"]
    assert conflict_markers(workspace, LIMITS) == ["settings.py"]
    with pytest.raises(WorkTreeRefused, match=r"Conflict markers are left in settings\.py"):
        commit_merge(workspace, "orchestrator/fix", "merge", LIMITS)
    with pytest.raises(GitFailed, match="'orchestrator/none' to resolve is not in the volume's mirror"):
        start_merge(workspace, mirror, "orchestrator/none", None)


def test_the_scripted_resolver_resolves_and_the_merge_has_both_parents(tmp_path: Path) -> None:
    try:
        claude = find_claude()
    except ClaudeNotFound as error:
        require(False, str(error))
    mirror, remote = conflicting_mirror(tmp_path)
    workspace = workspace_on_main(tmp_path, mirror, remote)
    conflicted = start_merge(workspace, mirror, "orchestrator/b", None)
    prompt = resolve_prompt(branch="main", merge_branch="orchestrator/b", conflicted=conflicted,
                            intents=[("storage", "Persist in localStorage"), ("b", "Add export")])
    with ScriptedModelServer(load_scenarios()) as server:
        env = claude_env(server.url, home=workspace.agent_home)
        env["CLAUDE_CONFIG_DIR"] = str(workspace.agent_home / ".claude")
        done = subprocess.run([str(claude), "-p", "--dangerously-skip-permissions"], input=prompt,
                              cwd=workspace.work_tree, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
    assert done.returncode == 0 and "Resolved the conflicts in settings.py" in done.stdout
    assert conflict_markers(workspace, LIMITS) == []
    commit = commit_merge(workspace, "orchestrator/fix", "Merge orchestrator/b", LIMITS)
    ours = git("rev-parse", "main", cwd=mirror).strip()
    theirs = git("rev-parse", "orchestrator/b", cwd=mirror).strip()
    assert parents_of(workspace, commit) == [ours, theirs]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    check = ResolvedCheck(commands=["python3 -m unittest"], source="task", timeout_s=120)
    outcome = run_check(check, cwd=workspace.work_tree, scratch=scratch,
                        env=check_environment({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}))
    assert outcome.passed, outcome.output_excerpt
    assert repo.push_to_mirror(workspace, mirror, "orchestrator/fix") is None
    shutil.rmtree(workspace.agent_root)
