"""Attributing an integration failure with real git merges and the real check: three branches
that each pass alone, one of which breaks the merge, or a pair that breaks only together."""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestration_protocol.attribution import Blame, attribute_failure
from orchestration_protocol.checkconfig import ResolvedCheck
from tests.gitrepo import IDENTITY, git
from worker.checks import check_environment, run_check

CHECK = ResolvedCheck(commands=["python3 -m unittest"], source="task", timeout_s=120)
BASE = {
    "app.py": "def greet():\n    return 'hi'\n",
    "test_app.py": "import unittest\n\nimport app\n\n\nclass T(unittest.TestCase):\n"
                   "    def test_greet(self):\n        self.assertEqual(app.greet(), 'hi')\n",
}


def repository(tmp_path: Path, branches: dict[str, dict[str, str]]) -> Path:
    repo = tmp_path / "repo"
    git("init", "-q", "--initial-branch=main", str(repo))
    for name, text in BASE.items():
        (repo / name).write_text(text)
    git("add", "-A", cwd=repo)
    git(*IDENTITY, "commit", "-qm", "base", cwd=repo)
    for branch, files in branches.items():
        git("checkout", "-qb", branch, "main", cwd=repo)
        for name, text in files.items():
            (repo / name).write_text(text)
        git("add", "-A", cwd=repo)
        git(*IDENTITY, "commit", "-qm", branch, cwd=repo)
    git("checkout", "-q", "main", cwd=repo)
    return repo


def passes_of(repo: Path, tmp_path: Path):
    """Merge the branches onto main in a scratch clone and run the real check."""
    runs = iter(range(1000))

    def passes(branches: list[str]) -> bool:
        scratch = tmp_path / f"merge-{next(runs)}"
        git("clone", "-q", str(repo), str(scratch))
        for branch in branches:
            git(*IDENTITY, "merge", "-q", "--no-edit", f"origin/{branch}", cwd=scratch)
        reports = scratch.with_suffix(".reports")
        reports.mkdir()
        env = check_environment({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        outcome = run_check(CHECK, cwd=scratch, env=env, scratch=reports)
        shutil.rmtree(scratch)
        return outcome.passed

    return passes


def test_the_branch_that_breaks_the_merge_is_found(tmp_path: Path) -> None:
    repo = repository(tmp_path, {
        "a": {"readme.md": "docs\n"},
        "b": {"app.py": "def greet():\n    return 'hi'\n\n\ndef shout():\n    return 'HI'\n",
              "test_shout.py": "import unittest\n\nimport app\n\n\nclass S(unittest.TestCase):\n"
                               "    def test_shout(self):\n        self.assertEqual(app.shout(), 'HI')\n"},
        "c": {"test_app.py": BASE["test_app.py"] + "\n    def test_greets_loudly(self):\n"
              "        import os\n        self.assertFalse(os.path.exists('test_shout.py'))\n"},
    })
    found = attribute_failure(["a", "b", "c"], passes_of(repo, tmp_path))
    assert found.blame == Blame.PAIR and found.branches == ["b", "c"] and found.repair == "c"
    assert found.checks_run == 4


def test_a_single_culprit_and_a_clean_merge(tmp_path: Path) -> None:
    repo = repository(tmp_path, {
        "a": {"readme.md": "docs\n"},
        "b": {"app.py": "def greet():\n    return 'hello'\n"},  # breaks test_greet on main
    })
    passes = passes_of(repo, tmp_path)
    found = attribute_failure(["a", "b"], passes)
    assert (found.blame, found.repair, found.checks_run) == (Blame.BRANCH, "b", 3)
    assert attribute_failure(["a"], passes).blame == Blame.NONE
