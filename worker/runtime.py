"""One attempt of one task, from claim to result.

claim -> heartbeat (background) -> caller token and relays to the gateway -> clone from the
volume's mirror -> agent (as its own uid, streamed to the log) -> check, commit -> artifacts
(patch, bundle, transcript) -> push into the mirror -> result. Every way it can end writes a
result that says what happened, except losing the claim, where the successor owns the result.

The runtime is trusted and the agent is not: the agent gets a work tree, a home, a caller token
bound to this attempt's claim and two loopback ports (model API, egress proxy), nothing else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO

from orchestration_protocol import (
    AgentKind,
    ClaimHandle,
    ClaimLost,
    InvalidFile,
    Layout,
    Result,
    ResultStatus,
    SchemaViolation,
    Task,
    TaskKind,
    WorkerPhase,
    atomic_write_bytes,
    parse_plan,
    plan_problems,
    utc_now,
)
from orchestration_protocol.contract import PASSTHROUGH_ENV
from orchestration_protocol.gateway import (
    GatewayCaller,
    api_socket,
    budget_error,
    connect_unix,
    mint_caller_token,
    proxy_socket,
    read_ledger,
    revoke_caller_token,
)
from orchestration_protocol.mirrors import mirror_dir
from orchestration_protocol.outcomes import CheckOutcome
from orchestration_protocol.untrusted import escape_controls

from . import repo
from .agents import Agent, agent_for
from .checks import check_environment
from .costs import StepClock
from .errors import GatewayUnavailable, NoRepository, WorkerError
from .process import run_supervised, signal_every_process_of
from .relay import Relay
from .settings import WorkerSettings
from .task_rounds import Hold, RoundPlan, TaskRounds, stable_agent_root, start_branch

AGENT_BASE_ENV = {
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
}
"""What every agent's environment starts from (nothing of the runtime's own is inherited)."""
MAX_FILES_LISTED = 1000
"""Most paths a result's ``files_changed`` lists, so a result stays under the readers' limit."""


def model_access(url: str, token: str, settings: WorkerSettings) -> dict[str, str]:
    """How the agent's Claude Code reaches the gateway: Anthropic's API with the caller token as
    its key, or (when the manager runs on Bedrock or Vertex) that provider's gateway mode, where
    Claude Code sends no credential and the token rides in the base URL's path."""
    through = f"{url}/caller/{token}"
    if settings.provider == "bedrock":
        return {
            "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1",
            "ANTHROPIC_BEDROCK_BASE_URL": through,
            "AWS_REGION": settings.aws_region,
        }
    if settings.provider == "vertex":
        return {"CLAUDE_CODE_SKIP_VERTEX_AUTH": "1", "ANTHROPIC_VERTEX_BASE_URL": through}
    return {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": token}


def check_failure(check: CheckOutcome) -> str:
    """One sentence for a failing check: the command, its exit, counts and failing tests."""
    if check.error:
        return f"check failed: {check.error}"
    counts = check.counts
    said = f"{check.failed_command or 'the check'} exited {check.exit_code}"
    if counts.total:
        said += f" ({counts.failed} failed, {counts.errors} errors, {counts.passed} passed)"
    if check.failing_tests:
        names = ", ".join(check.failing_tests[:5])
        more = len(check.failing_tests) - 5
        said += f": {names}" + (f" and {more} more" if more > 0 else "")
    return escape_controls(f"check failed: {said}")


class StopFlag:
    """Set from a signal handler (``docker stop``) or by the heartbeat when the claim is lost."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.claim_lost = False

    def set(self, reason: str, *, claim_lost: bool = False) -> None:
        if self.reason is None:
            self.reason = reason
        self.claim_lost = self.claim_lost or claim_lost


class Heartbeat(threading.Thread):
    """Renews the lease every ``interval_s`` with the current phase."""

    def __init__(
        self, handle: ClaimHandle, interval_s: float, stop: StopFlag, container: str | None
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.handle, self.interval_s, self.stop_flag, self.container = (
            handle,
            interval_s,
            stop,
            container,
        )
        self.phase = WorkerPhase.STARTING
        self.message: str | None = None
        self.done = threading.Event()

    def beat(self) -> None:
        try:
            self.handle.heartbeat(self.phase, message=self.message, container=self.container)
        except ClaimLost as error:
            self.stop_flag.set(str(error), claim_lost=True)
        except OSError:
            pass  # a missed beat is survivable; the lease covers several

    def run(self) -> None:
        while not self.done.wait(self.interval_s):
            self.beat()

    def enter(self, phase: WorkerPhase, message: str | None = None) -> None:
        self.phase, self.message = phase, message
        self.beat()


class TaskLog:
    """Appends readable lines to ``logs/<id>.log`` and stdout, with secret values masked. The
    agent's lines stop at ``max_agent_bytes`` per attempt (one marker line says so); the
    runtime's own lines, few and short, are always written."""

    def __init__(
        self,
        path: Path,
        secrets: list[str],
        previous: TaskLog | None = None,
        max_agent_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if previous is not None:
            previous.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self._secrets = [value for value in secrets if len(value) >= 6]
        self._lock = threading.Lock()
        self.max_agent_bytes = max_agent_bytes
        self.agent_bytes: int = previous.agent_bytes if previous is not None else 0
        """Bytes of the agent's lines written so far in this attempt."""

    def mask(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        for value in self._secrets:
            text = text.replace(value, "***")
        return text

    def write(self, line: str) -> None:
        line = self.mask(line)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            print(line, flush=True)

    def write_agent(self, lines: list[str]) -> None:
        """Write the agent's lines while the attempt's allowance lasts."""
        for line in lines:
            if self.agent_bytes >= self.max_agent_bytes:
                return
            self.agent_bytes += len(line.encode()) + 1
            if self.agent_bytes >= self.max_agent_bytes:
                self.write(
                    f"-- the agent's output is over {self.max_agent_bytes} bytes; the rest of it "
                    "is not logged (its result is still written)"
                )
                return
            self.write(line)

    def close(self) -> None:
        self._file.close()


def cut(text: str, max_bytes: int) -> str:
    """``text`` if it fits in ``max_bytes`` of UTF-8, else its end with a marker in front."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    kept = data[len(data) - max_bytes :].decode("utf-8", errors="ignore")
    return f"[output cut: {len(data)} bytes, the last {max_bytes} kept]\n{kept}"


class Attempt:
    """Runs one claimed attempt and publishes its result."""

    def __init__(
        self,
        settings: WorkerSettings,
        task: Task,
        handle: ClaimHandle,
        stop: StopFlag,
        clock: StepClock | None = None,
    ) -> None:
        self.settings, self.task, self.handle, self.stop = settings, task, handle, stop
        self.clock = clock or StepClock()
        """Where the attempt's time and CPU go, step by step (the log's ``-- cost:`` line)."""
        self.layout = Layout(settings.root)
        self.started = time.monotonic()
        self.started_at: datetime = handle.claim.claimed_at
        self.deadline = self.started + task.timeout_s if task.timeout_s else None
        self.token: str | None = None
        self.structured_output: object = None
        self.rounds: TaskRounds | None = None
        self.plan = RoundPlan(prompt=task.prompt)
        self.relays: list[Relay] = []
        self.last_output = time.monotonic()
        self.log = TaskLog(
            self.layout.log_file(task.id), [], max_agent_bytes=settings.max_log_bytes
        )
        self.heartbeat = Heartbeat(handle, settings.heartbeat_s, stop, settings.container)
        self.result = Result(
            task_id=task.id,
            status=ResultStatus.FAILED,
            completed_at=utc_now(),
            attempt=handle.attempt,
        )

    def stop_reason(self) -> str | None:
        """Why the agent must stop now (a signal, the claim, the time limit, silence, a cancel)."""
        return self._stop_reason(idle=True)

    def check_stop_reason(self) -> str | None:
        """Why the check must stop now: as for the agent, but a quiet check is not idle."""
        return self._stop_reason(idle=False)

    def _stop_reason(self, *, idle: bool) -> str | None:
        if self.stop.reason:
            return self.stop.reason
        now = time.monotonic()
        if self.deadline is not None and now > self.deadline:
            return f"timed out after {self.task.timeout_s:g}s"
        if idle and now - self.last_output > self.settings.idle_timeout_s:
            return (
                f"timed out: the agent printed nothing for {self.settings.idle_timeout_s:g}s "
                "(a model endpoint that does not answer?)"
            )
        if os.path.lexists(self.layout.cancel_file(self.task.id)):
            request = self.handle.cancel_request()
            return f"cancel requested: {(request.reason if request else None) or 'no reason given'}"
        return None

    def run(self) -> Result | None:
        """Do the work; return the published result (None when the claim was lost)."""
        self.log.write(
            f"== {self.task.id} attempt {self.handle.attempt} by {self.handle.claim.worker_id} at {self.started_at.isoformat()}"
        )
        self.heartbeat.enter(WorkerPhase.STARTING)
        self.heartbeat.start()
        self.clock.mark("claim")
        private = Path(tempfile.mkdtemp(prefix=f"orchestrator-{self.task.id}-"))
        workspace: repo.Workspace | None = None
        try:
            # the same cwd in every round: Claude Code resumes a session only there
            workspace = repo.Workspace(
                private=private,
                agent_root=stable_agent_root(self.task.id),
                author_name=self.settings.author_name,
                author_email=self.settings.author_email,
            )
            self._work(workspace)
        except WorkerError as error:
            self._fail(str(error))
        except Exception as error:  # the result must say what happened, whatever it was
            self._fail(f"worker crashed: {type(error).__name__}: {error}")
        finally:
            self._stop_checkpoints()
            self._close_gateway_access()
            self.heartbeat.done.set()
            if not self.settings.keep_workdir:
                shutil.rmtree(private, ignore_errors=True)
                if workspace is not None:
                    shutil.rmtree(workspace.agent_root, ignore_errors=True)
        return self._publish()

    def _stop_checkpoints(self) -> None:
        checkpointer = self.rounds.checkpointer if self.rounds is not None else None
        if checkpointer is not None and checkpointer.is_alive():
            checkpointer.stop()

    def _fail(self, error: str) -> None:
        self.log.write(f"!! {error}")
        self.result = self.result.model_copy(update={"status": ResultStatus.FAILED, "error": error})

    def _work(self, workspace: repo.Workspace) -> None:
        self._check_separation()
        url = self.task.repo or self.settings.repo_url
        if not url:
            raise NoRepository(
                f'Task {self.task.id} names no repo and REPO_URL is not set; add "repo" to the task.'
            )
        mirror = mirror_dir(self.layout, url)
        self.heartbeat.enter(WorkerPhase.CLONING, f"cloning {repo.redact(url)} from the volume")
        base, branch = repo.prepare(
            workspace,
            mirror,
            url,
            self._start_branch(),
            self.task.id,
            self.settings.agent_user,
            self.clock.mark,
        )
        self.result = self.result.model_copy(update={"base_commit": base, "branch": branch})
        self._begin_round(workspace, mirror, base)
        if self.task.kind == TaskKind.CHECK:
            self._check_only(workspace)
            return
        agent = self._run_agent(workspace)
        if self.stop.claim_lost:
            return
        if self.task.kind == TaskKind.PLAN:
            self._keep_plan()  # a planner's changes are never committed nor pushed
        else:
            self._keep_changes(agent, workspace, mirror, base, branch)

    def _start_branch(self) -> str | None:
        """The branch to clone: the task's own for a repair round, else the task's or worker's."""
        default = self.task.branch or self.settings.repo_branch
        try:
            return start_branch(self.layout, self.task, self.handle.attempt, default)
        except InvalidFile:
            return default  # TaskRounds says why, and the attempt runs as a plain retry

    def _begin_round(self, workspace: repo.Workspace, mirror: Path, base: str) -> None:
        """Which round this attempt is; restore its checkpoint or session, merge for a resolver."""
        self.rounds = TaskRounds(
            self.layout, self.task, self.handle.attempt, workspace, mirror,
            self.settings.agent_user, self.settings.limits,
        )
        conflicted = None
        if self.task.kind == TaskKind.RESOLVE and self.task.merge_branch:
            from . import resolve  # a resolver's alone

            conflicted = resolve.start_merge(
                workspace, mirror, self.task.merge_branch, self.settings.agent_user
            )
            self.log.write(f"-- merged {self.task.merge_branch}: {len(conflicted)} files in conflict")
        self.plan = self.rounds.begin(base, conflicted)
        report = self.plan.report
        self.log.write(f"-- round {report.number} ({report.kind.value}), session {report.session.value}")
        for note in self.plan.notes:
            self.log.write(f"-- {self.log.mask(note)}")

    def _run_check(self, workspace: repo.Workspace) -> CheckOutcome | None:
        """The task's check on the work tree, as the agent's user, with no secret and no
        network (the caller token is revoked, no proxy is set); None when it has none."""
        assert self.rounds is not None
        self.heartbeat.enter(WorkerPhase.COMMITTING, "running the check")
        env = check_environment(self._agent_env(workspace, {}))

        def on_line(line: str) -> None:
            self.last_output = time.monotonic()
            self.log.write_agent([f"check| {escape_controls(line)}"])

        check = self.rounds.run_check(
            env, self.check_stop_reason, on_line,
            profile=self.settings.check_profile, reap_user=self.settings.container is not None,
        )
        if check is not None:
            state = "passed" if check.passed else check_failure(check)
            self.log.write(f"== check ({check.source}): {state} in {check.duration_s:.1f}s")
        return check

    def _check_only(self, workspace: repo.Workspace) -> None:
        """A task of kind ``check``: the check alone on the branch; nothing is committed."""
        assert self.rounds is not None
        check = self._run_check(workspace)
        error = None
        if check is None:
            error = (
                f"Task {self.task.id} is a check but no check is set; add 'check:' to the "
                "repository's .orchestrator.yaml, the profile or the task."
            )
        elif not check.passed:
            error = check_failure(check)
        self.result = self.result.model_copy(
            update={
                "status": self._check_status() if error else ResultStatus.SUCCESS,
                "error": error,
                "branch": None,
                "check": check,
                "round": self.rounds.report([], check, None),
            }
        )

    def _hold(self) -> Hold | None:
        """How a checkpoint freezes the agent while it reads the tree: SIGSTOP and SIGCONT to
        every process of the agent's uid, which is its own only in a container; None without
        an agent uid (the agent has the runtime's rights already: nothing to freeze for)."""
        user = self.settings.agent_user
        if user is None or self.settings.container is None:
            return None

        @contextlib.contextmanager
        def frozen() -> Iterator[None]:
            signal_every_process_of(user, "SIGSTOP")
            try:
                yield
            finally:
                signal_every_process_of(user, "SIGCONT")

        return frozen

    def _check_separation(self) -> None:
        if self.settings.agent_user is not None and os.geteuid() != 0:
            raise WorkerError(
                "ORCHESTRATOR_AGENT_USER is set but the runtime is not root, so it cannot run "
                "the agent as another user; start the worker as root with SETUID and SETGID "
                "(the Docker backend does), or unset it on a trusted host."
            )

    def _open_gateway_access(self) -> dict[str, str]:
        """Mint this attempt's caller token and start the relays; the agent's model and proxy
        settings. A Claude task without a reachable gateway fails here, before it hangs."""
        caller = GatewayCaller(
            task_id=self.task.id,
            attempt=self.handle.attempt,
            worker_id=self.handle.claim.worker_id,
            issued_at=utc_now(),
            egress_allow=self.settings.egress_allow,
            node=self.settings.gateway_node,
        )
        api = api_socket(self.layout, self.settings.gateway_dir)
        try:
            connect_unix(api, timeout_s=5).close()
        except OSError as error:
            if self.task.agent == AgentKind.CLAUDE:
                raise GatewayUnavailable(
                    f"The gateway does not answer at {api} ({error.strerror or error}); start "
                    "workers with 'orchestrator spawn' or 'run', which start the gateway."
                ) from error
            return {}
        self.token = mint_caller_token(self.layout, caller)
        self.log = TaskLog(
            self.layout.log_file(self.task.id),
            [self.token],
            self.log,
            max_agent_bytes=self.settings.max_log_bytes,
        )
        model, egress = Relay(api), Relay(proxy_socket(self.layout, self.settings.gateway_dir))
        self.relays = [model, egress]
        proxy = f"http://{self.task.id}:{self.token}@127.0.0.1:{egress.port}"
        return {
            **model_access(model.url, self.token, self.settings),
            **{name: proxy for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")},
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def _close_gateway_access(self) -> None:
        for relay in self.relays:
            relay.close()
        self.relays = []
        if self.token is not None:
            revoke_caller_token(self.layout, self.token)
            self.token = None

    def _run_agent(self, workspace: repo.Workspace) -> Agent:
        """Run the agent in its work tree until it ends or is stopped; record what it reported."""
        assert self.rounds is not None
        rounds = self.rounds
        env = self._agent_env(workspace, self._open_gateway_access())
        self.clock.mark("gateway")
        self.heartbeat.enter(WorkerPhase.RUNNING, f"running {self.task.agent.value}")
        agent = agent_for(self.task, self.settings.model, self.settings.max_budget_usd)
        claude = self.task.agent == AgentKind.CLAUDE

        def on_line(line: str) -> None:
            self.last_output = time.monotonic()
            self.log.write_agent(agent.render(line))
            rounds.on_agent_line(line)

        self.last_output = time.monotonic()
        rounds.start_checkpoints(self._hold())
        outcome = run_supervised(
            agent.command() + (self.plan.extra_args if claude else []),
            cwd=workspace.work_tree,
            env=env,
            on_line=on_line,
            should_stop=self.stop_reason,
            stdin_text=self.plan.prompt if claude else agent.stdin_text(),
            user=self.settings.agent_user,
            reap_user=self.settings.container is not None,
        )
        self._close_gateway_access()
        self.clock.mark("agent")
        if not self.stop.claim_lost:
            self._end_agent(agent, claude)
            self._record_agent(agent, outcome.exit_code, outcome.stopped_because)
        return agent

    def _end_agent(self, agent: Agent, claude: bool) -> None:
        """Stop checkpointing, save the session; log what went wrong with either."""
        assert self.rounds is not None
        env = check_environment(self._agent_env(self.rounds.workspace, {}))
        keep_tree = self.rounds.has_check(self.settings.check_profile, env)
        note = self.rounds.end_agent(agent.transcript, keep_tree=keep_tree)
        problems = [*dict.fromkeys(self.rounds.problems), *([note] if note and claude else [])]
        for problem in problems[:10]:
            self.log.write(f"-- {self.log.mask(problem)}")

    def _keep_changes(
        self, agent: Agent, workspace: repo.Workspace, mirror: Path, base: str, branch: str
    ) -> None:
        """Check, commit, save the patch, bundle and transcript, push into the mirror; also after
        a failure or a stop."""
        self.heartbeat.enter(WorkerPhase.COMMITTING)
        artifacts = self.layout.artifacts_dir(self.task.id)
        artifacts.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            artifacts / "transcript.jsonl",
            "".join(f"{self.log.mask(line)}\n" for line in agent.transcript).encode(),
        )
        repo.check_work_tree(workspace, self.settings.limits)
        message = f"{self.task.id}: {self.task.prompt.splitlines()[0][:60]}"
        if self.task.kind == TaskKind.RESOLVE and self.result.status == ResultStatus.SUCCESS:
            from . import resolve

            resolve.commit_merge(workspace, branch, message, self.settings.limits)
        summary = repo.commit_all(workspace, message, base)
        repo.check_change(workspace, base, summary.head_commit, self.settings.limits)
        self.clock.mark("commit")
        # the check judges the commit's tree; what it writes (caches, reports) is not committed
        check = self._run_check(workspace) if self.result.status == ResultStatus.SUCCESS else None
        self.clock.mark("check")
        patch = repo.save_patch(workspace, base, branch, artifacts, self.settings.limits)
        self.clock.mark("patch")
        committed = summary.head_commit != base
        if len(summary.files_changed) > MAX_FILES_LISTED:
            self.log.write(
                f"-- {len(summary.files_changed)} files changed; the result lists the first "
                f"{MAX_FILES_LISTED} (the patch and the branch hold them all)"
            )
        push_problem = repo.push_to_mirror(workspace, mirror, branch) if committed else "nothing to push"
        self.clock.mark("push")
        if push_problem and committed:
            self.log.write(f"-- branch not pushed into the mirror: {push_problem}; bundled instead")
            repo.save_bundle(workspace, base, branch, artifacts, self.settings.limits)
            self.clock.mark("bundle")
        self._end_round(summary.files_changed, check, committed and push_problem is not None)
        self.result = self.result.model_copy(
            update={
                "head_commit": summary.head_commit,
                "files_changed": summary.files_changed[:MAX_FILES_LISTED],
                "insertions": summary.insertions,
                "deletions": summary.deletions,
                "patch": str(patch.relative_to(self.layout.root)),
                "pushed": push_problem is None,
            }
        )

    def _end_round(self, changed: list[str], check: CheckOutcome | None, unpushed: bool) -> None:
        """The round's report and check into the result (a failing check fails the task); the
        WIP branch dropped once the task's branch holds the work."""
        assert self.rounds is not None
        if not unpushed:
            problem = self.rounds.finish()
            if problem:
                self.log.write(f"-- the checkpoint branch was not deleted: {problem}")
        update: dict[str, object] = {
            "check": check,
            "round": self.rounds.report(changed[:MAX_FILES_LISTED], check, self.result.output),
        }
        if check is not None and not check.passed:
            update.update(status=self._check_status(), error=check_failure(check))
        self.result = self.result.model_copy(update=update)

    def _check_status(self) -> ResultStatus:
        """A failing check fails the task, unless the task's time limit or a cancel stopped it."""
        reason = self.check_stop_reason()
        if reason is None:
            return ResultStatus.FAILED
        return ResultStatus.TIMEOUT if reason.startswith("timed out") else ResultStatus.CANCELLED

    def _keep_plan(self) -> None:
        """Put the agent's plan into the result: checked field by field and as a whole, so a
        result's plan is always one the manager can run (it checks again: results are untrusted)."""
        self.result = self.result.model_copy(update={"branch": None})
        if self.result.status != ResultStatus.SUCCESS:
            return
        output = self.structured_output
        if output is None:
            self._fail("the planner returned no plan (it never called StructuredOutput)")
            return
        try:
            plan = parse_plan(output)
        except ValueError as error:
            self._fail(f"the planner's plan is not valid ({error})")
            return
        problems = plan_problems(plan)
        if problems:
            self._fail(f"the planner's plan is not sound: {problems[0]}")
            return
        self.result = self.result.model_copy(
            update={"plan": plan.model_dump(mode="json", exclude_none=True)}
        )

    def _record_agent(self, agent: Agent, exit_code: int, stopped_because: str | None) -> None:
        report = agent.report(exit_code)
        self.structured_output = report.structured_output
        if stopped_because is None:
            status = (
                ResultStatus.FAILED if report.is_error or exit_code != 0 else ResultStatus.SUCCESS
            )
            error = report.error if status == ResultStatus.FAILED else None
            refusal = budget_error(self.layout, self.task.id, self.handle.attempt)
            if refusal:  # refused or over its budget: failed, whatever the agent's exit says
                status, error = ResultStatus.FAILED, f"budget exceeded: {refusal}"
        elif stopped_because.startswith("timed out"):
            status, error = ResultStatus.TIMEOUT, stopped_because
        else:
            status, error = ResultStatus.CANCELLED, stopped_because
        self.log.write(
            f"== agent ended: exit {exit_code}, {status.value}" + (f" ({error})" if error else "")
        )
        attempt = self.handle.attempt
        cost: float | None = report.cost_usd  # the agent's own figure: forgeable by the agent
        metered = [e for e in read_ledger(self.layout, self.task.id) if e.attempt == attempt]
        if metered:  # the gateway's figure, which the agent cannot forge
            cost = sum(entry.cost_usd for entry in metered)
        self.result = self.result.model_copy(
            update={
                "status": status,
                "error": self.log.mask(error) if error else None,
                "exit_code": exit_code,
                "output": cut(self.log.mask(report.output), self.settings.max_output_bytes),
                "cost_usd": cost,
                "usage": report.usage,
                "num_turns": report.num_turns,
            }
        )

    def _agent_env(self, workspace: repo.Workspace, gateway: dict[str, str]) -> dict[str, str]:
        """The agent's whole environment, built from nothing: no runtime setting, no secret."""
        env = dict(AGENT_BASE_ENV)
        env.update({name: os.environ[name] for name in PASSTHROUGH_ENV if os.environ.get(name)})
        env.update(self.task.env)
        env.update(gateway)
        env.update(
            PATH=os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            HOME=str(workspace.agent_home),
            ORCHESTRATOR_TASK_ID=self.task.id,
            CLAUDE_CONFIG_DIR=str(workspace.agent_home / ".claude"),
        )
        if os.geteuid() == 0 and self.settings.agent_user is None:
            env["IS_SANDBOX"] = "1"
        return env

    def _publish(self) -> Result | None:
        if self.stop.claim_lost:
            self.log.write(f"!! {self.stop.reason}; the successor owns the result")
            self.log.close()
            return None
        completed = utc_now()
        result = self.result.model_copy(
            update={
                "completed_at": completed,
                "started_at": self.started_at,
                "duration_s": round(time.monotonic() - self.started, 3),
            }
        )
        self.heartbeat.enter(WorkerPhase.PUBLISHING)
        try:
            try:
                published = self.handle.publish_result(result)
            except SchemaViolation as error:  # a bad figure in the agent's report: not its work
                self.log.write(f"!! {error} Publishing it without the agent's own figures.")
                published = self.handle.publish_result(
                    result.model_copy(update={"cost_usd": None, "usage": None, "num_turns": None})
                )
        except ClaimLost as error:
            self.log.write(f"!! {error}")
            self.log.close()
            return None
        self.clock.mark("result")
        self.log.write(
            f"== result: {published.status.value}"
            + (f" ({published.error})" if published.error else "")
        )
        self.log.write(self.clock.line())
        self.log.close()
        return published
