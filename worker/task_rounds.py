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

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestration_protocol import (
    AgentKind,
    InvalidFile,
    Layout,
    Task,
    TaskKind,
    read_model,
)
from orchestration_protocol.checkconfig import CheckConfigInvalid, ResolvedCheck
from orchestration_protocol.claims import attempt_result
from orchestration_protocol.mirrors import task_branch
from orchestration_protocol.models import DEFAULT_MAX_REPAIRS
from orchestration_protocol.outcomes import CheckOutcome, RoundKind, RoundReport, SessionUse
from orchestration_protocol.repair_prompt import interrupted_note, repair_prompt, resolve_prompt
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
from .errors import WorkerError
from .session_store import restore_session, resume_args, save_session, session_id_of

AGENTS_DIR = "orchestrator-agents"
MANAGER_ID = "manager"
"""The worker id of a result the manager wrote for an attempt whose worker left none (lost)."""
Hold = Callable[[], contextlib.AbstractContextManager[None]]
"""Freezes the agent while a checkpoint reads its tree (see ``Attempt._frozen_agent``)."""
TURN_END_TYPES = frozenset({"user", "result"})
"""Stream-json lines after which the tree is checkpointed: ``user`` carries the results of the
tools the agent called (they ran), ``result`` ends the run."""


def stable_agent_root(task_id: str) -> Path:
    """The agent's root for every attempt of ``task_id`` on this machine: Claude Code resumes a
    session only in the identical working directory, so the work tree's path must not change
    between rounds (a container's ``/tmp`` is its own; on a host, one attempt runs at a time).
    On a host the parent is this uid's own directory (``orchestrator-agents-<uid>``), made here
    or refused when another user made it or it is a link: nobody else can swap the tree."""
    parent = Path(tempfile.gettempdir()) / f"{AGENTS_DIR}-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        parent.mkdir(mode=0o755)
    info = parent.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise WorkerError(
            f"{parent} is not a directory of this user that only it may write; remove it, so "
            "the worker makes its agents' directories there again."
        )
    parent.chmod(0o755)  # the agent may pass through, not replace what is inside
    root = parent / task_id
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    root.chmod(0o755)
    return root


def previous_attempt_lost(layout: Layout, task_id: str, attempt: int) -> bool:
    """Whether attempt ``attempt - 1`` was lost (its worker wrote no result: the manager wrote
    one, or none exists), rather than ended and reported by its own worker."""
    if attempt <= 1:
        return False
    result = attempt_result(layout, task_id, attempt - 1)
    return result is None or result.worker_id in (None, MANAGER_ID)


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
        self.session_id: str | None = None
        """The agent's session id, from its first stream-json line."""
        self.problems: list[str] = []
        """Checkpoints or session saves that failed while the agent ran (for the log)."""
        self.agent_running = False
        """Whether the agent may be changing the tree (a checkpoint then freezes it)."""
        self._check: ResolvedCheck | None = None

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

    def begin(self, base: str, conflicted: list[str] | None = None) -> RoundPlan:
        """Restore what this round continues; the prompt and arguments for the agent
        (``conflicted``: a resolver's files in conflict)."""
        self.base = base
        number = self.request.number if self.request else 1
        report = RoundReport(kind=self.kind(), number=number)
        lost = (
            self.request is None
            and self.task.kind in (TaskKind.CHANGE, TaskKind.RESOLVE)
            and previous_attempt_lost(self.layout, self.task.id, self.attempt)
        )
        if lost:
            self.plan.checkpoint, problem = restore_checkpoint(
                self.workspace, self.mirror, self.task.id, base, self.owner
            )
            if problem:
                self.plan.notes.append(f"{problem}; the attempt starts from its base commit.")
        wants_session = self.task.agent == AgentKind.CLAUDE and (
            lost or (self.request is not None and self.request.resume_session)
        )
        session = self._restore_session(report) if wants_session else None
        self.plan.extra_args = resume_args(session)
        self.plan.prompt = self._prompt(session is not None, lost, conflicted)
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

    def _prompt(self, resumed: bool, lost: bool, conflicted: list[str] | None) -> str:
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
        prompt = self.task.prompt
        if self.task.kind == TaskKind.RESOLVE and self.task.merge_branch and conflicted is not None:
            prompt = resolve_prompt(
                branch=self.task.branch or "the integration branch",
                merge_branch=self.task.merge_branch,
                conflicted=conflicted,
                intents=self._intents(),
            )
        if lost and (self.plan.checkpoint is not None or resumed):
            note = interrupted_note(self.attempt - 1)
            return note if resumed else f"{note}\n\nThe task:\n\n{prompt}"
        return prompt

    def _intents(self) -> list[tuple[str, str]]:
        """What each side of a resolver's merge was asked: the resolver's own prompt (the
        manager writes the integration side's intent there) and the merged branch's task."""
        intents = [(self.task.id, self.task.prompt)]
        merged = (self.task.merge_branch or "").removeprefix("orchestrator/")
        with contextlib.suppress(InvalidFile, OSError, ValueError):
            other = read_model(self.layout.task_file(merged), Task, merged)
            intents.append((other.id, other.prompt))
        return intents

    def start_checkpoints(self, hold: Hold | None) -> None:
        """Checkpoint the tree while the agent runs (at turn ends, and every 30 s if changed),
        each with the agent frozen by ``hold``; with no way to freeze it (an agent uid on a
        host), only once it ended, so the runtime never reads a tree that changes under it."""
        base = self.base
        if base is None or self.task.kind not in (TaskKind.CHANGE, TaskKind.RESOLVE):
            return

        def write(last: Checkpoint | None) -> Checkpoint | None:
            frozen = hold() if hold is not None and self.agent_running else None
            with frozen or contextlib.nullcontext():
                made = write_checkpoint(
                    self.workspace, self.mirror, self.task.id, base, self.limits, last
                )
                self._save_session()
            return made

        self.checkpointer = Checkpointer(write, on_problem=self.problems.append)
        self.agent_running = True
        if hold is not None or self.owner is None:
            self.checkpointer.start()

    def _save_session(self) -> None:
        if self.session_id is None:
            return
        problem = save_session(
            self.layout, self.task.id, self.attempt, self.config_dir, self.workspace.work_tree,
            self.session_id,
        )
        if problem:
            self.problems.append(problem)

    def on_agent_line(self, line: str) -> None:
        """Feed each line of the agent's output: a finished turn asks for a checkpoint."""
        if self.checkpointer is None or not line.startswith("{"):
            return
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        if self.session_id is None:
            self.session_id = session_id_of([line])
        if event.get("type") in TURN_END_TYPES:
            self.checkpointer.poke()

    def end_agent(self, transcript: list[str], *, keep_tree: bool = True) -> str | None:
        """The agent ended: stop checkpointing and save its session; None, or why not saved.
        ``keep_tree``: checkpoint the tree as the agent left it, for the time until the task's
        branch holds it (worth it when a check runs first; else the push follows at once)."""
        self.agent_running = False
        if self.checkpointer is not None:
            if self.checkpointer.is_alive():
                self.checkpointer.stop()
            if keep_tree:
                self.checkpointer.checkpoint_now()
        session = session_id_of(transcript)
        self.plan.report.session_id = session
        if session is None and not transcript:
            return None
        return save_session(
            self.layout, self.task.id, self.attempt, self.config_dir, self.workspace.work_tree, session
        )

    def resolve(self, profile: tuple[str, list[str] | None] | None, env: Mapping[str, str]) -> ResolvedCheck:
        """The task's check, read from the base commit (once per attempt)."""
        if self._check is None:
            self._check = resolve_for_workspace(
                self.workspace,
                self.base or "HEAD",
                task_check=self.task.check,
                task_timeout_s=self.task.check_timeout_s,
                profile=profile,
                pytest_installed=lambda: pytest_installed(env),
            )
        return self._check

    def has_check(self, profile: tuple[str, list[str] | None] | None, env: Mapping[str, str]) -> bool:
        """Whether the round runs a check after its commit (True when that cannot be told yet:
        a config the check step will name as unusable)."""
        try:
            return bool(self.resolve(profile, env).commands)
        except (CheckConfigInvalid, OSError):  # said by the check step, which fails the round
            return True

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
        """The task's branch is pushed: drop its WIP branch; None, or why not. A first attempt
        that pushed no checkpoint has none to drop (only this task's attempts make one)."""
        if self.attempt == 1 and (self.checkpointer is None or self.checkpointer.count == 0):
            return None
        return drop_checkpoint(self.workspace, self.mirror, self.task.id)
