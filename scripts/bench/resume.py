"""Benchmark of crash resume (issue 18): a task killed at half its turns, then resumed from its
checkpoint and its session, beside restarted from scratch; the real ``claude`` binary against
the scripted model, no Docker (the parts the runtime calls: ``worker.task_rounds``).

Run by hand::

    .venv/bin/python scripts/bench/resume.py [--runs 3] [--files 6] [--turn-delay 2.2]

Each run, twice (once per case): attempt 1 of a task whose agent writes ``--files`` files, one
per turn (each reply ``--turn-delay`` s, a slow model; more than the checkpointer's 2 s gap, so
each turn ends in a checkpoint); once the checkpoint holds the first half of the files (and the
session is saved with it), the agent's process group gets SIGKILL and the worker writes no
result (it died). Then attempt 2: (a) resume: the checkpoint and the session restored,
``claude --resume`` with the interrupted note, the other half of the files; (b) restart from
scratch: the WIP branch and the saved session dropped first, so a fresh clone and a fresh
session do the whole task again. Attempt 2 is timed from the clone to the branch pushed into the
mirror. It prints a markdown table of the medians: attempt 2's wall seconds, its model turns, the
input tokens of the conversation it sent (characters over 4, as ``repair.py`` counts them) and the
output tokens the scripted model reported; and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from manager.git.mirror import ensure_mirror
from orchestration_protocol import Layout, Task
from orchestration_protocol.claude_cli import find_claude
from scripted_model import ScriptedModelServer, claude_env, load_scenarios
from worker import repo
from worker.checkpoint import wip_branch
from worker.process import run_supervised
from worker.task_rounds import TaskRounds, stable_agent_root, start_branch

TASK_ID = "bench-resume"
PROMPT = "Write the parts. scripted: bench resume"
OUTPUT_TOKENS = 50
IDENTITY = ["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"]


def scenarios(files: int, delay_s: float) -> dict[str, Any]:
    """The task's scenario (``files`` turns, one file each) and the resumed attempt's (the
    second half: the scripted model knows what is left, as a model reading the tree would)."""
    def turns(numbers: range) -> list[dict[str, Any]]:
        return [{"text": f"Writing part-{n}.txt.", "delay_s": delay_s,
                 "tool_uses": [{"name": "Write", "input": {"file_path": f"{{cwd}}/part-{n}.txt",
                                                           "content": f"part {n}\n" * 40}}]}
                for n in numbers]
    usage = {"input_tokens": 100, "output_tokens": OUTPUT_TOKENS}
    return {"description": "scripts/bench/resume.py", "scenarios": [
        {"name": "bench-resume-rest", "match": "was interrupted (its worker stopped)",
         "turns": turns(range(files // 2 + 1, files + 1)), "final_text": "Wrote the rest.",
         "usage": usage},
        {"name": "bench-resume-task", "match": "scripted: bench resume",
         "turns": turns(range(1, files + 1)), "final_text": "Wrote every part.", "usage": usage},
    ]}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_remote(root: Path) -> Path:
    remote, seed = root / "remote.git", root / "seed"
    git("init", "-q", "--bare", "--initial-branch=main", str(remote))
    git("init", "-q", "--initial-branch=main", str(seed))
    (seed / "README.md").write_text("# bench\n")
    git("add", ".", cwd=seed)
    git(*IDENTITY, "commit", "-q", "-m", "initial", cwd=seed)
    git("push", "-q", str(remote), "main", cwd=seed)
    return remote


class Attempt:
    """One attempt as the runtime runs it, up to the agent's command."""

    def __init__(self, server: ScriptedModelServer, root: Path, volume: tuple[Layout, Path, Path],
                 number: int) -> None:
        layout, remote, self.mirror = volume
        task = Task(id=TASK_ID, prompt=PROMPT)
        self.workspace = repo.Workspace(private=root / f"private-{number}",
                                        agent_root=stable_agent_root(TASK_ID))
        self.workspace.private.mkdir()
        branch = start_branch(layout, task, number, None)
        self.base, self.branch = repo.prepare(self.workspace, self.mirror, str(remote), branch, TASK_ID, None)
        self.rounds = TaskRounds(layout, task, number, self.workspace, self.mirror, None, repo.Limits())
        self.plan = self.rounds.begin(self.base)
        self.rounds.start_checkpoints(None)
        self.env = claude_env(server.url, home=self.workspace.agent_home)
        self.env["CLAUDE_CONFIG_DIR"] = str(self.rounds.config_dir)
        self.command = [str(find_claude()), "-p", "--output-format", "stream-json", "--verbose",
                        "--dangerously-skip-permissions", *self.plan.extra_args]

    def checkpointed(self, name: str) -> bool:
        return name in git("ls-tree", "--name-only", wip_branch(TASK_ID), cwd=self.mirror).split()

    def killed_at(self, files: int) -> None:
        """Run the agent until the checkpoint holds the first half of the files, then SIGKILL
        its process group; the worker dies with it (no final checkpoint, no result)."""
        half = f"part-{files // 2}.txt"
        process = subprocess.Popen(self.command, cwd=self.workspace.work_tree, env=self.env,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(self.plan.prompt)
        process.stdin.close()
        output = process.stdout

        def pump() -> None:
            for line in output:
                self.rounds.on_agent_line(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        checkpointer, seen = self.rounds.checkpointer, -1
        assert checkpointer is not None
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if checkpointer.count != seen:
                seen = checkpointer.count
                if seen and self.checkpointed(half):
                    break
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        checkpointer.stop()
        reader.join(timeout=10)
        later = f"part-{files // 2 + 1}.txt"
        if not self.checkpointed(half) or self.checkpointed(later):
            raise SystemExit(f"the kill missed the half: {half} checkpointed {self.checkpointed(half)}, "
                             f"{later} {self.checkpointed(later)}")

    def to_the_end(self) -> list[str]:
        """Run the agent to its end; commit and push the branch, as a finished attempt does."""
        transcript: list[str] = []

        def on_line(line: str) -> None:
            transcript.append(line)
            self.rounds.on_agent_line(line)

        outcome = run_supervised(self.command, cwd=self.workspace.work_tree, env=self.env,
                                 on_line=on_line, should_stop=lambda: None, stdin_text=self.plan.prompt)
        if outcome.exit_code != 0:
            raise SystemExit(f"claude exited {outcome.exit_code}: {transcript[-3:]}")
        self.rounds.end_agent(transcript)
        repo.commit_all(self.workspace, f"{TASK_ID}: round 1", self.base)
        problem = repo.push_to_mirror(self.workspace, self.mirror, self.branch) or self.rounds.finish()
        if problem:
            raise SystemExit(problem)
        return transcript


class Server(ScriptedModelServer):
    answered: set[str] = set()
    """The scenarios that answered attempt 2's turns."""


def one_case(server: Server, root: Path, files: int, resume: bool) -> dict[str, float]:
    layout = Layout(root / "volume").ensure()
    remote = make_remote(root)
    volume = (layout, remote, ensure_mirror(layout, str(remote), credentials={}))
    Attempt(server, root, volume, 1).killed_at(files)
    if not resume:  # what a worker without checkpoints and sessions would have
        git("update-ref", "-d", f"refs/heads/{wip_branch(TASK_ID)}", cwd=volume[2])
        shutil.rmtree(layout.artifacts_dir(TASK_ID) / "session")
    server.clear_requests()
    started, since = time.monotonic(), time.time()  # attempt 1's request in flight came before
    second = Attempt(server, root, volume, 2)
    second.to_the_end()
    seconds = time.monotonic() - started
    tree = git("ls-tree", "--name-only", f"orchestrator/{TASK_ID}", cwd=volume[2]).split()
    expected = {f"part-{n}.txt" for n in range(1, files + 1)}
    turns = [r for r in server.turn_requests() if r.time >= since]
    server.answered.update(r.scenario or "" for r in turns)
    return {
        "seconds": seconds,
        "turns": float(len(turns)),
        "input": sum(len(json.dumps(r.body.get("messages", []))) for r in turns) / 4,
        "output": float(OUTPUT_TOKENS * len(turns)),
        "resumed": float(bool(second.plan.extra_args)),
        "complete": float(expected <= set(tree)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=6, help="the task's turns (one file each)")
    parser.add_argument("--turn-delay", type=float, default=2.2, help="seconds per model reply")
    args = parser.parse_args()
    book = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
    with book:
        json.dump(scenarios(args.files, args.turn_delay), book)
    cases: dict[str, list[dict[str, float]]] = {"resume": [], "restart from scratch": []}
    try:
        with Server(load_scenarios([Path(book.name)])) as server:
            for index in range(args.runs):
                for name, runs in cases.items():
                    with tempfile.TemporaryDirectory(prefix=f"bench-resume-{index}-") as root:
                        runs.append(one_case(server, Path(root), args.files, name == "resume"))
    finally:
        os.unlink(book.name)
        shutil.rmtree(stable_agent_root(TASK_ID), ignore_errors=True)
    print(f"{args.files} files, one per turn, {args.turn_delay:g} s per reply; killed after "
          f"{args.files // 2}; medians of {args.runs} runs\n")
    print("| attempt 2 | wall s | model turns | input tokens (~) | output tokens | complete |")
    print("|---|---|---|---|---|---|")
    for name, runs in cases.items():
        def median(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)
        print(f"| {name} | {median('seconds'):.2f} | {median('turns'):.0f} | {median('input'):.0f} | "
              f"{median('output'):.0f} | {sum(int(r['complete']) for r in runs)} of {len(runs)} |")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\nLoad average (1, 5, 15 min) at the end: {load}; resumed with --resume: "
          f"{sum(int(r['resumed']) for r in cases['resume'])} of {args.runs}; attempt 2 answered by "
          f"{', '.join(sorted(server.answered))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
