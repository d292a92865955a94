"""``./run.sh --continue``: entrypoint.sh keeps the manager's Claude Code session files in the
volume and resumes the newest one of the same clone. Run on this host with a stand-in for
``claude`` that records its arguments and writes a session file where Claude Code does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_CLAUDE = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$FAKE_ARGS"
dir="${CLAUDE_CONFIG_DIR:-$HOME/.claude}/projects/$(pwd | sed 's/[^a-zA-Z0-9]/-/g')"
mkdir -p "$dir"
printf '{"type":"user"}\\n' > "$dir/$FAKE_SESSION.jsonl"
"""


def _start(tmp_path: Path, session: str, *, resume: bool) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "claude"
    fake.write_text(FAKE_CLAUDE)
    fake.chmod(0o755)
    home = tmp_path / f"home-{session}"  # a new container: nothing of the last one's home is left
    env = {
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(home),
        "ORCHESTRATION_DIR": str(tmp_path / "volume"),
        "ORCHESTRATOR_WORKSPACE": str(tmp_path / "workspace"),
        "ORCHESTRATOR_STATE_DIR": str(tmp_path / f"state-{session}"),
        "ORCHESTRATOR_SYSTEM_PROMPT": str(REPO_ROOT / "system-prompt.md"),
        "ORCHESTRATOR_SIMULATE": "0",
        "ORCHESTRATOR_CONTINUE": "1" if resume else "0",
        "FAKE_ARGS": str(tmp_path / f"args-{session}"),
        "FAKE_SESSION": session,
        "PYTHONPATH": str(REPO_ROOT),
    }
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "entrypoint.sh")], env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return (tmp_path / f"args-{session}").read_text().splitlines()


def test_continue_resumes_the_last_session_of_the_volume(tmp_path: Path) -> None:
    first = _start(tmp_path, "11111111-aaaa-4bbb-8ccc-000000000001", resume=True)
    assert "--resume" not in first, "no earlier session: a new one"
    saved = list((tmp_path / "volume" / "manager" / "sessions").rglob("*.jsonl"))
    assert [path.name for path in saved] == ["11111111-aaaa-4bbb-8ccc-000000000001.jsonl"]
    assert oct(saved[0].parent.stat().st_mode & 0o777) == "0o700"
    second = _start(tmp_path, "22222222-aaaa-4bbb-8ccc-000000000002", resume=True)
    assert second[second.index("--resume") + 1] == "11111111-aaaa-4bbb-8ccc-000000000001"
    plain = _start(tmp_path, "33333333-aaaa-4bbb-8ccc-000000000003", resume=False)
    assert "--resume" not in plain
