"""Benchmark of one repair round, from a failing check to a passing branch, with the real
``claude`` binary against the scripted model (no Docker: the parts the runtime calls).

Run by hand::

    .venv/bin/python scripts/bench/repair.py [--runs 5]

Each run: round 1 (``scripted: break the check``: Claude Code writes a bug and its test), the
check (``python3 -m unittest``, as the worker runs it), the session saved into a volume;
round 2 in a fresh config dir at the same cwd: the session restored, ``claude --resume`` with
the repair prompt, the check again. It prints a markdown table of the medians: seconds per
phase and the input tokens the scripted model counted for each round (the resumed round sends
the earlier turns again), and how many runs ended with a passing check.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from orchestration_protocol import Layout
from orchestration_protocol.checkconfig import ResolvedCheck
from orchestration_protocol.claude_cli import find_claude
from orchestration_protocol.repair_prompt import repair_prompt
from scripted_model import ScriptedModelServer, claude_env, load_scenarios
from worker.checks import check_environment, run_check
from worker.session_store import restore_session, resume_args, save_session, session_id_of

CHECK = ResolvedCheck(commands=["python3 -m unittest"], source="task", timeout_s=120)


def claude(url: str, cwd: Path, config: Path, prompt: str, resume: str | None) -> tuple[list[str], float]:
    env = claude_env(url, home=config.parent / "home")
    env["CLAUDE_CONFIG_DIR"] = str(config)
    started = time.monotonic()
    done = subprocess.run(
        [str(find_claude()), "-p", "--output-format", "stream-json", "--verbose",
         "--dangerously-skip-permissions", *resume_args(resume)],
        input=prompt, cwd=cwd, env=env, capture_output=True, text=True, check=True,
    )
    return done.stdout.splitlines(), time.monotonic() - started


def input_tokens(server: ScriptedModelServer) -> int:
    """Characters of the conversation sent in the round's requests, over 4 (a token estimate)."""
    return sum(len(json.dumps(r.body.get("messages", []))) for r in server.turn_requests()) // 4


def one_run(server: ScriptedModelServer, root: Path) -> dict[str, float]:
    cwd = root / "agent" / "repo"
    cwd.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(cwd)], check=True)
    layout = Layout(root / "volume").ensure()
    env = check_environment({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(root)})
    server.clear_requests()
    lines, first = claude(server.url, cwd, root / "r1" / ".claude", "Add a greeting. scripted: break the check", None)
    tokens_1 = input_tokens(server)
    save_session(layout, "t1", 1, root / "r1" / ".claude", cwd, session_id_of(lines))
    (root / "s1").mkdir()
    failure = run_check(CHECK, cwd=cwd, env=env, scratch=root / "s1")
    restored = restore_session(layout, "t1", root / "r2" / ".claude", cwd)
    prompt = repair_prompt(failure, task_prompt="", round_number=2, max_rounds=3, resumed=True)
    server.clear_requests()
    _, second = claude(server.url, cwd, root / "r2" / ".claude", prompt, restored.session_id)
    (root / "s2").mkdir()
    fixed = run_check(CHECK, cwd=cwd, env=env, scratch=root / "s2")
    return {"round 1 (agent)": first, "check (failing)": failure.duration_s,
            "round 2 (resumed agent)": second, "check (passing)": fixed.duration_s,
            "tokens 1": tokens_1, "tokens 2": input_tokens(server), "passed": float(fixed.passed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with ScriptedModelServer(load_scenarios()) as server:
        runs = []
        for index in range(args.runs):
            with tempfile.TemporaryDirectory(prefix=f"bench-repair-{index}-") as root:
                runs.append(one_run(server, Path(root)))
    print("| phase | median s |\n|---|---|")
    for phase in ("round 1 (agent)", "check (failing)", "round 2 (resumed agent)", "check (passing)"):
        print(f"| {phase} | {statistics.median(r[phase] for r in runs):.2f} |")
    total = statistics.median(r["check (failing)"] + r["round 2 (resumed agent)"] + r["check (passing)"] for r in runs)
    print(f"| failing check to passing branch | {total:.2f} |")
    print(f"\nConversation sent (~tokens): round 1 {statistics.median(r['tokens 1'] for r in runs):.0f}, "
          f"round 2 {statistics.median(r['tokens 2'] for r in runs):.0f}; "
          f"repaired: {sum(int(r['passed']) for r in runs)} of {len(runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
