"""One attempt seen as a round of its task: what the runtime calls, in order, to resume a
session, checkpoint the tree, run the check and report the round (issue 18).

The runtime (``worker.runtime.Attempt``) keeps its flow and calls, around the agent:

1. ``rounds = TaskRounds(layout, task, attempt, workspace, mirror, owner, limits)``;
2. ``plan = rounds.begin(base)`` after ``repo.prepare``: restores the previous attempt's
   checkpoint (a lost attempt) and the task's session (a repair round); ``plan.prompt`` replaces
   the task's prompt on the agent's stdin, ``plan.extra_args`` go after the agent's command;
3. ``rounds.start_checkpoints(base)`` before the agent starts, ``rounds.on_agent_line(line)``
   for each output line, ``rounds.end_agent(transcript)`` when it ended (saves the session);
4. ``check = rounds.run_check(env, should_stop, on_line)`` before committing;
5. ``rounds.report(changed_files, check)`` into ``Result.round``; ``rounds.finish()`` after the
   branch is pushed (drops the WIP branch).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestration_protocol import InvalidFile, Layout, Task, TaskKind
from orchestration_protocol.checkconfig import ResolvedCheck
from orchestration_protocol.mirrors import task_branch
from orchestration_protocol.models import DEFAULT_MAX_REPAIRS
from orchestration_protocol.outcomes import CheckOutcome, RoundKind, RoundReport, SessionUse
from orchestration_protocol.repair_prompt import interrupted_note, repair_prompt
from orchestration_protocol.rounds import RoundRequest, read_round_for_attempt

from . import repo
from .checkpoint import (
    Checkpoint,
    Checkpointer,
    drop_checkpoint,
    restore_checkpoint,
    write_checkpoint,
)
from .checks import make_scratch, pytest_installed, resolve_for_workspace, run_check
from .session_store import restore_session, resume_args, save_session, session_id_of

AGENTS_DIR = "orchestrator-agents"
TURN_END_TYPES = frozenset({"user", "result"})
"""Stream-json lines after which the tree is checkpointed: ``user`` carries the results of the
tools the agent called (they ran), ``result`` ends the run."""


def stable_agent_root(task_id: str) -> Path:
    """The agent's root for every attempt of ``task_id`` on this machine: Claude Code resumes a
    session only in the identical working directory, so the work tree's path must not change
    between rounds (a container's ``/tmp`` is its own; on a host, one attempt runs at a time)."""
    root = Path(tempfile.gettempdir()) / AGENTS_DIR / task_id
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    root.parent.chmod(0o755)
    root.chmod(0o755)
    return root


def start_branch(layout: Layout, task: Task, attempt: int, default: str | None) -> str | None:
    """The branch an attempt clones: the task's own branch for a repair round (its last commit,
    not from scratch), else ``default`` (the task's or the worker's branch)."""
    request = read_round_for_attempt(layout, task.id, attempt)
    if request is not None and request.kind == RoundKind.REPAIR:
        return task_branch(task.id)
    return default


@dataclass
class RoundPlan:
    """How this attempt's agent is started."""

    prompt: str
    """What goes to the agent's stdin instead of the task's prompt."""
    extra_args: list[str] = field(default_factory=list)
    """Arguments appended to the agent's command (``--resume <id>``)."""
    report: RoundReport = field(default_factory=lambda: RoundReport(kind=RoundKind.RUN))
    """The round's report so far (kind, number, session use)."""
    checkpoint: str | None = None
    """The checkpoint restored into the tree, when there was one."""
    notes: list[str] = field(default_factory=list)
    """One sentence for each thing that fell back (for the log)."""


class TaskRounds:
    """The round-keeping of one attempt."""

    def __init__(
        self,
        layout: Layout,
        task: Task,
        attempt: int,
        workspace: repo.Workspace,
        mirror: Path,
        owner: tuple[int, int] | None,
        limits: repo.Limits,
    ) -> None:
        self.layout, self.task, self.attempt = layout, task, attempt
        self.workspace, self.mirror, self.owner, self.limits = workspace, mirror, owner, limits
        self.plan = RoundPlan(prompt=task.prompt)
        self.request: RoundRequest | None = None
        try:
            self.request = read_round_for_attempt(layout, task.id, attempt)
        except InvalidFile as error:  # the manager's file, but a file: say so and run plainly
            self.plan.notes.append(f"{error} This attempt runs as a plain retry.")
        self.checkpointer: Checkpointer | None = None
        self.base: str | None = None

    @property
    def max_repairs(self) -> int:
        """The task's repair rounds (its own, else the default)."""
        return DEFAULT_MAX_REPAIRS if self.task.max_repairs is None else self.task.max_repairs

    @property
    def config_dir(self) -> Path:
        """The agent's Claude Code config dir (``CLAUDE_CONFIG_DIR``)."""
        return self.workspace.agent_home / ".claude"

    def kind(self) -> RoundKind:
        if self.request is not None:
            return self.request.kind
        return {TaskKind.CHECK: RoundKind.CHECK, TaskKind.RESOLVE: RoundKind.RESOLVE}.get(
            self.task.kind, RoundKind.RUN
        )

    def begin(self, base: str) -> RoundPlan:
        """Restore what this round continues; the prompt and arguments for the agent."""
        self.base = base
        number = self.request.number if self.request else 1
        report = RoundReport(kind=self.kind(), number=number)
        lost = self.request is None and self.attempt > 1
        if lost:
            self.plan.checkpoint, problem = restore_checkpoint(
                self.workspace, self.mirror, self.task.id, base, self.owner
            )
            if problem:
                self.plan.notes.append(f"{problem}; the attempt starts from its base commit.")
        wants_session = lost or (self.request is not None and self.request.resume_session)
        session = self._restore_session(report) if wants_session else None
        self.plan.extra_args = resume_args(session)
        self.plan.prompt = self._prompt(session is not None)
        self.plan.report = report
        return self.plan

    def _restore_session(self, report: RoundReport) -> str | None:
        restored = restore_session(
            self.layout, self.task.id, self.config_dir, self.workspace.work_tree, self.owner
        )
        report.session = SessionUse.RESUMED if restored.session_id else SessionUse.FRESH
        report.session_note = restored.note
        if restored.note:
            self.plan.notes.append(restored.note)
        return restored.session_id

    def _prompt(self, resumed: bool) -> str:
        request = self.request
        if request is not None and request.kind == RoundKind.REPAIR and request.failure is not None:
            return repair_prompt(
                request.failure,
                task_prompt=self.task.prompt,
                round_number=request.number,
                max_rounds=self.max_repairs + 1,
                resumed=resumed,
                integration=request.integration,
            )
        if self.plan.checkpoint is not None or (request is None and self.attempt > 1 and resumed):
            note = interrupted_note(self.attempt - 1)
            return note if resumed else f"{note}\n\nThe task:\n\n{self.task.prompt}"
        return self.task.prompt

    def start_checkpoints(self) -> None:
        """Checkpoint the tree while the agent runs (at turn ends, and every 30 s if changed)."""
        base = self.base
        if base is None or self.task.kind not in (TaskKind.CHANGE, TaskKind.RESOLVE):
            return

        def write(last: Checkpoint | None) -> Checkpoint | None:
            return write_checkpoint(self.workspace, self.mirror, self.task.id, base, self.limits, last)

        self.checkpointer = Checkpointer(write)
        self.checkpointer.start()

    def on_agent_line(self, line: str) -> None:
        """Feed each line of the agent's output: a finished turn asks for a checkpoint."""
        if self.checkpointer is None or not line.startswith("{"):
            return
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return
        if isinstance(event, dict) and event.get("type") in TURN_END_TYPES:
            self.checkpointer.poke()

    def end_agent(self, transcript: list[str]) -> str | None:
        """The agent ended: stop checkpointing and save its session; None, or why not saved."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer.checkpoint_now()  # the tree as the agent left it
        session = session_id_of(transcript)
        self.plan.report.session_id = session
        if session is None and not transcript:
            return None
        return save_session(
            self.layout, self.task.id, self.attempt, self.config_dir, self.workspace.work_tree, session
        )

    def resolve(self, profile: tuple[str, list[str] | None] | None, env: Mapping[str, str]) -> ResolvedCheck:
        """The task's check, read from the base commit."""
        return resolve_for_workspace(
            self.workspace,
            self.base or "HEAD",
            task_check=self.task.check,
            task_timeout_s=self.task.check_timeout_s,
            profile=profile,
            pytest_installed=pytest_installed(env),
        )

    def run_check(
        self,
        env: Mapping[str, str],
        should_stop: Callable[[], str | None],
        on_line: Callable[[str], None],
        *,
        profile: tuple[str, list[str] | None] | None = None,
        reap_user: bool = False,
    ) -> CheckOutcome | None:
        """Run the task's check in the work tree as the agent's user; None when it has none."""
        check = self.resolve(profile, env)
        if not check.commands:
            return None
        return run_check(
            check,
            cwd=self.workspace.work_tree,
            env=env,
            scratch=make_scratch(self.workspace, self.owner),
            user=self.owner,
            should_stop=should_stop,
            on_line=on_line,
            reap_user=reap_user,
        )

    def report(self, changed_files: list[str], check: CheckOutcome | None, summary: str | None) -> RoundReport:
        """The round's report for ``Result.round``."""
        return self.plan.report.model_copy(
            update={
                "changed_files": changed_files,
                "check_passes": None if check is None else check.passed,
                "summary": (summary or "")[:2000] or None,
            }
        )

    def finish(self) -> str | None:
        """The task's branch is pushed: drop its WIP branch; None, or why not."""
        return drop_checkpoint(self.workspace, self.mirror, self.task.id)
