"""One attempt of one task, from claim to result.

claim -> heartbeat (background) -> clone -> branch -> agent (streamed to the log) -> commit ->
artifacts (patch, bundle, transcript) -> push -> result. Every way it can end writes a result
that says what happened, except losing the claim, where the successor owns the result.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import IO

from orchestration_protocol import (
    ClaimHandle,
    ClaimLost,
    Layout,
    Result,
    ResultStatus,
    Task,
    WorkerPhase,
    atomic_write_bytes,
    utc_now,
)

from . import repo
from .agents import Agent, agent_for
from .errors import NoRepository, WorkerError
from .process import run_supervised
from .settings import SECRET_NAMES, WorkerSettings, read_secret

AGENT_SECRETS = tuple(name for name in SECRET_NAMES if not name.startswith("GIT_"))


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
    """Appends readable lines to ``logs/<id>.log`` and stdout, with secret values masked."""

    def __init__(self, path: Path, secrets: list[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self._secrets = [value for value in secrets if len(value) >= 6]
        self._lock = threading.Lock()

    def write(self, line: str) -> None:
        for value in self._secrets:
            line = line.replace(value, "***")
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            print(line, flush=True)

    def write_all(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> None:
        self._file.close()


class Attempt:
    """Runs one claimed attempt and publishes its result."""

    def __init__(
        self, settings: WorkerSettings, task: Task, handle: ClaimHandle, stop: StopFlag
    ) -> None:
        self.settings, self.task, self.handle, self.stop = settings, task, handle, stop
        self.layout = Layout(settings.root)
        self.started = time.monotonic()
        self.started_at: datetime = handle.claim.claimed_at
        self.deadline = self.started + task.timeout_s if task.timeout_s else None
        self.secrets = {
            name: value
            for name in SECRET_NAMES
            if (value := read_secret(name, settings.secrets_dir))
        }
        self.log = TaskLog(self.layout.log_file(task.id), list(self.secrets.values()))
        self.heartbeat = Heartbeat(handle, settings.heartbeat_s, stop, settings.container)
        self.result = Result(
            task_id=task.id,
            status=ResultStatus.FAILED,
            completed_at=utc_now(),
            attempt=handle.attempt,
        )

    def stop_reason(self) -> str | None:
        if self.stop.reason:
            return self.stop.reason
        if self.deadline is not None and time.monotonic() > self.deadline:
            return f"timed out after {self.task.timeout_s:g}s"
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
        scratch = Path(tempfile.mkdtemp(prefix=f"orchestrator-{self.task.id}-"))
        try:
            self._work(scratch)
        except WorkerError as error:
            self._fail(str(error))
        except Exception as error:  # the result must say what happened, whatever it was
            self._fail(f"worker crashed: {type(error).__name__}: {error}")
        finally:
            self.heartbeat.done.set()
            if not os.environ.get("ORCHESTRATOR_KEEP_WORKDIR"):
                shutil.rmtree(scratch, ignore_errors=True)
        return self._publish()

    def _fail(self, error: str) -> None:
        self.log.write(f"!! {error}")
        self.result = self.result.model_copy(update={"status": ResultStatus.FAILED, "error": error})

    def _work(self, scratch: Path) -> None:
        access = repo.GitAccess(
            scratch,
            ssh_key=self.secrets.get("GIT_SSH_KEY"),
            token=self.secrets.get("GIT_TOKEN"),
            author_name=os.environ.get("GIT_USER_NAME", "Claude Worker"),
            author_email=os.environ.get("GIT_USER_EMAIL", "worker@claude-orchestrator.invalid"),
        )
        clone_dir = scratch / "repo"
        base, branch = self._clone(clone_dir, access)
        agent = self._run_agent(clone_dir, scratch)
        if not self.stop.claim_lost:
            self._keep_changes(agent, clone_dir, base, branch, access)

    def _clone(self, clone_dir: Path, access: repo.GitAccess) -> tuple[str, str]:
        """Clone the task's repository onto its branch; return the base commit and the branch."""
        url = self.task.repo or self.settings.repo_url
        if not url:
            raise NoRepository(
                f'Task {self.task.id} names no repo and REPO_URL is not set; add "repo" to the task.'
            )
        self.heartbeat.enter(WorkerPhase.CLONING, f"cloning {repo.redact(url)}")
        base = repo.clone(url, self.task.branch or self.settings.repo_branch, clone_dir, access)
        branch = repo.start_branch(clone_dir, self.task.id, access)
        self.result = self.result.model_copy(update={"base_commit": base, "branch": branch})
        return base, branch

    def _run_agent(self, clone_dir: Path, scratch: Path) -> Agent:
        """Run the agent in the clone until it ends or is stopped; record what it reported."""
        self.heartbeat.enter(WorkerPhase.RUNNING, f"running {self.task.agent.value}")
        agent = agent_for(self.task, self.settings.model)
        outcome = run_supervised(
            agent.command(),
            cwd=clone_dir,
            env=self._agent_env(scratch),
            on_line=lambda line: self.log.write_all(agent.render(line)),
            should_stop=self.stop_reason,
            stdin_text=agent.stdin_text(),
        )
        if not self.stop.claim_lost:
            self._record_agent(agent, outcome.exit_code, outcome.stopped_because)
        return agent

    def _keep_changes(
        self, agent: Agent, clone_dir: Path, base: str, branch: str, access: repo.GitAccess
    ) -> None:
        """Commit, save the patch, bundle and transcript, push; also after a failure or a stop."""
        self.heartbeat.enter(WorkerPhase.COMMITTING)
        summary = repo.commit_all(
            clone_dir, f"{self.task.id}: {self.task.prompt.splitlines()[0][:60]}", base, access
        )
        artifacts = self.layout.artifacts_dir(self.task.id)
        patch, _ = repo.save_artifacts(clone_dir, base, branch, artifacts, access)
        atomic_write_bytes(
            artifacts / "transcript.jsonl",
            "".join(f"{line}\n" for line in agent.transcript).encode(),
        )
        committed = summary.head_commit != base
        push_problem = repo.push(clone_dir, branch, access) if committed else "nothing to push"
        if push_problem and committed:
            self.log.write(f"-- branch not pushed: {push_problem}")
        self.result = self.result.model_copy(
            update={
                "head_commit": summary.head_commit,
                "files_changed": summary.files_changed,
                "insertions": summary.insertions,
                "deletions": summary.deletions,
                "patch": str(patch.relative_to(self.layout.root)),
                "pushed": push_problem is None,
            }
        )

    def _record_agent(self, agent: Agent, exit_code: int, stopped_because: str | None) -> None:
        report = agent.report(exit_code)
        if stopped_because is None:
            status = (
                ResultStatus.FAILED if report.is_error or exit_code != 0 else ResultStatus.SUCCESS
            )
            error = report.error if status == ResultStatus.FAILED else None
        elif stopped_because.startswith("timed out"):
            status, error = ResultStatus.TIMEOUT, stopped_because
        else:
            status, error = ResultStatus.CANCELLED, stopped_because
        self.log.write(
            f"== agent ended: exit {exit_code}, {status.value}" + (f" ({error})" if error else "")
        )
        self.result = self.result.model_copy(
            update={
                "status": status,
                "error": error,
                "exit_code": exit_code,
                "output": report.output,
                "cost_usd": report.cost_usd,
                "usage": report.usage,
                "num_turns": report.num_turns,
            }
        )

    def _agent_env(self, scratch: Path) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key not in SECRET_NAMES}
        env.update({name: value for name, value in self.secrets.items() if name in AGENT_SECRETS})
        env.update(self.task.env)
        env.update(
            ORCHESTRATOR_TASK_ID=self.task.id,
            DISABLE_TELEMETRY="1",
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            CLAUDE_CONFIG_DIR=str(scratch / "claude-config"),
        )
        if os.geteuid() == 0:
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
            published = self.handle.publish_result(result)
        except ClaimLost as error:
            self.log.write(f"!! {error}")
            self.log.close()
            return None
        self.log.write(
            f"== result: {published.status.value}"
            + (f" ({published.error})" if published.error else "")
        )
        self.log.close()
        return published
