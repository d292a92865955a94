"""manager.session: the settings entrypoint.sh writes before the manager's claude starts."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from manager.profiles import USER_PROFILES, builtin_profiles, load_profiles
from manager.session import ALLOWED_TOOLS, main, prepare

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ant-api03-some-key-0123456789abcdefghij"


def test_claude_starts_without_prompts_and_may_run_the_orchestrator(tmp_path: Path) -> None:
    home, workdir = tmp_path / "home", tmp_path / "clone"
    env = {"ANTHROPIC_API_KEY": KEY, "REPO_URL": "/srv/app.git", "REPO_BRANCH": "dev"}
    env["ORCHESTRATION_DIR"] = str(tmp_path / "volume")
    prompt, profiles = prepare(home, workdir, REPO_ROOT / "system-prompt.md", env)
    config = json.loads((home / ".claude.json").read_text())
    assert config["hasCompletedOnboarding"] is True
    assert config["projects"][str(workdir)]["hasTrustDialogAccepted"] is True
    assert config["customApiKeyResponses"]["approved"] == [KEY[-20:]]
    assert KEY not in (home / ".claude.json").read_text()
    assert (home / ".claude.json").stat().st_mode & 0o077 == 0
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert "Bash(orchestrator:*)" in settings["permissions"]["allow"]
    assert "Bash(spawn-worker:*)" in settings["permissions"]["allow"]
    # nothing allowed without a prompt prints an arbitrary file, and the secrets are denied
    assert not any(
        rule.startswith(("Bash(cat", "Bash(head", "Bash(tail", "Bash(jq", "Bash(env"))
        for rule in settings["permissions"]["allow"]
    )
    assert "Read(//run/orchestrator-secrets/**)" in settings["permissions"]["deny"]
    assert "Read(//proc/**)" in settings["permissions"]["deny"]
    assert profiles is None
    assert prompt.startswith("# You are the manager of claude-orchestrator")
    assert f"/srv/app.git, branch dev; your clone is {workdir}" in prompt
    assert "Simulation mode" not in prompt
    tasks = tmp_path / "volume" / "tasks"
    assert tasks.is_dir() and tasks.stat().st_mode & 0o777 == 0o777


def test_running_twice_keeps_what_is_there(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text(
        json.dumps({"permissions": {"allow": ["Bash(make:*)"]}, "theme": "dark"})
    )
    for _ in range(2):
        env = {"ANTHROPIC_API_KEY": KEY, "ORCHESTRATION_DIR": str(tmp_path / "volume")}
        prepare(home, tmp_path / "clone", tmp_path / "missing.md", env)
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    assert settings["theme"] == "dark"
    assert settings["permissions"]["allow"] == ["Bash(make:*)", *ALLOWED_TOOLS]
    config = json.loads((home / ".claude.json").read_text())
    assert config["customApiKeyResponses"]["approved"] == [KEY[-20:]]


def test_simulation_and_limits_are_told_to_the_manager(tmp_path: Path) -> None:
    env = {"ORCHESTRATOR_SIMULATE": "1", "ORCHESTRATOR_MAX_WORKERS": "3", "ANTHROPIC_MODEL": "m1"}
    env["ORCHESTRATION_DIR"] = str(tmp_path / "volume")
    prompt, _ = prepare(tmp_path / "home", tmp_path, tmp_path / "none.md", env)
    assert "at most 3 workers" in prompt and "Model: m1" in prompt
    assert "Add --simulate to every" in prompt


def test_worker_mounts_become_profiles_that_keep_the_builtins(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ORCHESTRATOR_PROFILES", raising=False)
    env = {"ORCHESTRATOR_WORKER_MOUNTS": "/srv/app.git:/srv/app.git, /cache:/cache:ro"}
    env["ORCHESTRATION_DIR"] = str(tmp_path / "volume")
    _, written = prepare(home, tmp_path, tmp_path / "none.md", env)
    assert written == USER_PROFILES.expanduser()
    profiles = load_profiles(None)
    assert set(profiles) == set(builtin_profiles())
    for name, builtin in builtin_profiles().items():
        assert profiles[name].mounts == ["/srv/app.git:/srv/app.git", "/cache:/cache:ro"]
        assert profiles[name].model_dump(exclude={"mounts"}) == builtin.model_dump(
            exclude={"mounts"}
        )
    yaml.safe_load(written.read_text())
    written.write_text("mine: {image: claude-worker}\n")
    _, again = prepare(home, tmp_path, tmp_path / "none.md", env)
    assert again is None and "mine" in written.read_text()


def test_main_writes_the_prompt_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORCHESTRATION_DIR", str(tmp_path / "volume"))
    out = tmp_path / "prompt.md"
    code = main(
        [
            "--workdir",
            str(tmp_path),
            "--prompt-out",
            str(out),
            "--system-prompt",
            str(REPO_ROOT / "system-prompt.md"),
        ]
    )
    assert code == 0
    assert "orchestrator wait" in out.read_text() and "## This session" in out.read_text()


def test_an_unwritable_volume_is_a_warning_not_a_failure(tmp_path: Path, capsys) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    env = {"ORCHESTRATION_DIR": str(blocked / "volume")}
    prompt, _ = prepare(tmp_path / "home", tmp_path, tmp_path / "none.md", env)
    assert "## This session" in prompt
    assert "is not writable" in capsys.readouterr().err
