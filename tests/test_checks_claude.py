"""The repair loop's parts with the real ``claude`` binary against the scripted model: a run
breaks the check; its session is saved into the volume, restored into a fresh config dir at
the same cwd and resumed with the failure as data; the fix happens. A fresh session, given the
same failure, does not fix it. An unfixable check stays failed; a conflict gets resolved."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestration_protocol import Layout
from orchestration_protocol.checkconfig import ResolvedCheck
from orchestration_protocol.claude_cli import ClaudeNotFound, find_claude
from orchestration_protocol.outcomes import CheckOutcome
from orchestration_protocol.repair_prompt import repair_prompt, resolve_prompt
from scripted_model import ScriptedModelServer, claude_env, load_scenarios
from tests.conftest import require
from worker.checks import check_environment, run_check
from worker.session_store import (
    encode_cwd,
    restore_session,
    resume_args,
    save_session,
    session_dir,
    session_id_of,
)

UNITTEST = ResolvedCheck(commands=["python3 -m unittest"], source="task", timeout_s=120)


@pytest.fixture(scope="module")
def server():
    try:
        find_claude()
    except ClaudeNotFound as error:
        require(False, str(error))
    with ScriptedModelServer(load_scenarios()) as running:
        yield running


def claude(server, cwd: Path, config: Path, prompt: str, resume: str | None = None) -> list[str]:
    """Run ``claude -p`` as the worker does; its stream-json lines."""
    env = claude_env(server.url, home=config.parent / "home")
    env["CLAUDE_CONFIG_DIR"] = str(config)
    command = [str(find_claude()), "-p", "--output-format", "stream-json", "--verbose",
               "--dangerously-skip-permissions", *resume_args(resume)]
    done = subprocess.run(command, input=prompt, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout.splitlines()


def check(cwd: Path, tmp_path: Path) -> CheckOutcome:
    scratch = tmp_path / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    env = check_environment({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)})
    return run_check(UNITTEST, cwd=cwd, env=env, scratch=scratch)


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def first_round(server, tmp_path: Path, task: str) -> tuple[Path, Layout, CheckOutcome]:
    """Round 1: the run breaks the check; the session is saved into the volume."""
    cwd = git_repo(tmp_path / "agent-t1" / "repo")
    layout = Layout(tmp_path / "volume").ensure()
    config = tmp_path / "round1" / ".claude"
    transcript = claude(server, cwd, config, task)
    session = session_id_of(transcript)
    assert session and (config / "projects" / encode_cwd(str(cwd)) / f"{session}.jsonl").is_file()
    assert save_session(layout, "t1", 1, config, cwd, session) is None
    failure = check(cwd, tmp_path)
    assert not failure.passed and failure.runner == "unittest"
    return cwd, layout, failure


def repair_round(server, tmp_path: Path, cwd: Path, layout: Layout, failure: CheckOutcome,
                 number: int, *, restore: bool) -> tuple[list[str], str | None]:
    config = tmp_path / f"round{number}" / ".claude"  # a fresh config dir, as a new container
    restored = restore_session(layout, "t1", config, cwd) if restore else None
    session = restored.session_id if restored else None
    prompt = repair_prompt(failure, task_prompt="the task", round_number=number, max_rounds=3,
                           resumed=session is not None)
    return claude(server, cwd, config, prompt, resume=session), session


def test_a_resumed_session_repairs_the_check(server, tmp_path: Path) -> None:
    cwd, layout, failure = first_round(server, tmp_path, "Add a greeting. scripted: break the check")
    assert failure.failing_tests == ["test_greeting.GreetingTest.test_greet"]
    assert (failure.counts.passed, failure.counts.failed) == (0, 1)
    server.clear_requests()
    transcript, session = repair_round(server, tmp_path, cwd, layout, failure, 2, restore=True)
    assert session is not None and session_id_of(transcript) == session
    requests = server.turn_requests()
    assert requests and requests[0].body["messages"][0]["role"] == "user"
    assert len(requests[0].body["messages"]) > 2  # the earlier turns came with the new prompt
    assert check(cwd, tmp_path).passed
    assert 'return f"Hello, {name}!"' in (cwd / "greeting.py").read_text()


def test_a_fresh_session_does_not_repair_it(server, tmp_path: Path) -> None:
    cwd, layout, failure = first_round(server, tmp_path, "Add a greeting. scripted: break the check")
    transcript, session = repair_round(server, tmp_path, cwd, layout, failure, 2, restore=False)
    result = json.loads(transcript[-1])
    assert session is None and "no earlier turns" in result["result"]
    assert not check(cwd, tmp_path).passed


def test_an_unfixable_check_stays_failed_after_every_round(server, tmp_path: Path) -> None:
    cwd, layout, failure = first_round(server, tmp_path, "Add a clock. scripted: unfixable")
    for number in (2, 3):
        transcript, session = repair_round(server, tmp_path, cwd, layout, failure, number,
                                           restore=True)
        assert session is not None and "could not fix" in json.loads(transcript[-1])["result"]
        failure = check(cwd, tmp_path)
        assert not failure.passed
        config = tmp_path / f"round{number}" / ".claude"
        assert save_session(layout, "t1", number, config, cwd, session) is None


def test_a_session_that_is_missing_or_foreign_means_a_fresh_session(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "volume").ensure()
    cwd = tmp_path / "repo"
    config = tmp_path / "c" / ".claude"
    missing = restore_session(layout, "t1", config, cwd)
    assert missing.session_id is None and missing.note is not None
    assert missing.note.startswith("no saved session for task t1") and missing.note.endswith(
        "; this round starts a fresh session.")
    session = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    project = config / "projects" / encode_cwd(str(cwd))
    project.mkdir(parents=True)
    line = {"type": "user", "sessionId": session, "cwd": str(cwd)}
    (project / f"{session}.jsonl").write_text(json.dumps(line) + "\n")
    assert save_session(layout, "t2", 1, config, cwd, session) is None
    shutil.copytree(session_dir(layout, "t2"), session_dir(layout, "t1"))  # another task's
    foreign = restore_session(layout, "t1", tmp_path / "d" / ".claude", cwd)
    assert foreign.session_id is None and "belongs to task t2, not t1" in (foreign.note or "")
    elsewhere = restore_session(layout, "t2", tmp_path / "e" / ".claude", tmp_path / "other")
    assert elsewhere.session_id is None and "only in the same directory" in (elsewhere.note or "")
    (session_dir(layout, "t2") / f"{session}.jsonl").write_text(
        json.dumps({**line, "sessionId": "another"}) + "\n")
    swapped = restore_session(layout, "t2", tmp_path / "f" / ".claude", cwd)
    assert swapped.session_id is None and "lines of session another" in (swapped.note or "")


def test_a_session_file_that_is_a_link_is_not_saved(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "volume").ensure()
    cwd, config = tmp_path / "repo", tmp_path / "c" / ".claude"
    session = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    project = config / "projects" / encode_cwd(str(cwd))
    project.mkdir(parents=True)
    (tmp_path / "secret").write_text("root only")
    (project / f"{session}.jsonl").symlink_to(tmp_path / "secret")
    assert "was not found" in (save_session(layout, "t1", 1, config, cwd, session) or "")
    assert not session_dir(layout, "t1").exists()


def test_a_conflict_is_resolved_with_both_sides(server, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    (repo / "settings.py").write_text("THEME = 'light'\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    subprocess.run([*git, "checkout", "-qb", "side"], check=True)
    (repo / "settings.py").write_text("THEME = 'light'\nEXPORT = True\n")
    subprocess.run([*git, "commit", "-qam", "export"], check=True)
    subprocess.run([*git, "checkout", "-q", "-"], check=True)
    (repo / "settings.py").write_text("THEME = 'light'\nSTORAGE = 'localStorage'\n")
    subprocess.run([*git, "commit", "-qam", "storage"], check=True)
    merged = subprocess.run([*git, "merge", "-q", "side"], capture_output=True, check=False)
    assert merged.returncode != 0 and "<<<<<<<" in (repo / "settings.py").read_text()
    prompt = resolve_prompt(branch="orchestrator/integration", merge_branch="side",
                            conflicted=["settings.py"],
                            intents=[("storage", "Persist in localStorage"), ("export", "Add export")])
    transcript = claude(server, repo, tmp_path / "r" / ".claude", prompt)
    assert "Resolved the conflicts in settings.py" in json.loads(transcript[-1])["result"]
    assert (repo / "settings.py").read_text() == (
        "THEME = 'light'\nSTORAGE = 'localStorage'\nEXPORT = True\n")


def test_a_session_in_a_long_working_directory_is_saved_and_resumed(server, tmp_path: Path) -> None:
    cwd = git_repo(tmp_path / ("d" * 120) / ("e.f_g" * 30))  # Claude Code cuts and hashes the name
    layout = Layout(tmp_path / "volume").ensure()
    first = tmp_path / "one" / ".claude"
    session = session_id_of(claude(server, cwd, first, "reply: remember me"))
    assert session and encode_cwd(str(cwd)) not in [p.name for p in (first / "projects").iterdir()]
    assert save_session(layout, "t1", 1, first, cwd, session) is None
    restored = restore_session(layout, "t1", tmp_path / "two" / ".claude", cwd)
    assert restored.session_id == session
    server.clear_requests()
    claude(server, cwd, tmp_path / "two" / ".claude", "reply: again", resume=session)
    assert len(server.turn_requests()[0].body["messages"]) > 2
