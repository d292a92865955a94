"""``orchestrator-worker``: run one task (``--task ID``), drain the queue (``--pool``), or wait
idle in a warm pool for one task of a profile and run it (``--warm``, started by
``orchestrator pool``).

Exit codes: 0 a result was written (whatever its status), 1 the worker crashed, 2 bad usage or
configuration, 3 nothing to claim (already claimed or finished), 4 the claim was lost.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from orchestration_protocol import (
    InvalidFile,
    Layout,
    ProtocolError,
    Result,
    ResultStatus,
    TaskNotFound,
    next_attempt,
    read_board,
    read_task,
    try_claim_attempt,
    utc_now,
)
from orchestration_protocol import claim_task as claim
from orchestration_protocol.contract import ENV_POOL, ENV_POOL_PROFILE, WorkerExit
from orchestration_protocol.pool import DEFAULT_PROFILE

from .costs import StepClock
from .runtime import Attempt, StopFlag
from .settings import WorkerSettings, resolve_worker_settings

RET_OK, RET_CRASHED, RET_USAGE, RET_NOTHING_TO_CLAIM, RET_CLAIM_LOST = tuple(WorkerExit)


def settings_from_env(args: argparse.Namespace) -> WorkerSettings:
    return resolve_worker_settings(Path(args.root) if args.root else None, args.worker_id)


def run_one(
    settings: WorkerSettings,
    task_id: str,
    stop: StopFlag,
    *,
    force: bool = False,
    clock: StepClock | None = None,
) -> int:
    """Claim and run one task (``force``: even past max_attempts); the exit code says how."""
    layout = Layout(settings.root)
    try:
        task = read_task(layout, task_id)
    except TaskNotFound as error:
        print(f"orchestrator-worker: {error} Create the task file first.", file=sys.stderr)
        return RET_USAGE
    except InvalidFile as error:
        return _reject_invalid_task(layout, task_id, error, settings)
    layout.ensure()  # a root of hand-dropped task files has tasks/ alone
    handle = claim(
        layout, task_id, worker_id=settings.worker_id, lease_s=settings.lease_s, force=force
    )
    if handle is None:
        print(
            f"orchestrator-worker: task {task_id} has nothing to claim (already claimed or finished).",
            file=sys.stderr,
        )
        return RET_NOTHING_TO_CLAIM
    result = Attempt(settings, task, handle, stop, clock).run()
    return RET_OK if result is not None else RET_CLAIM_LOST


def _reject_invalid_task(
    layout: Layout, task_id: str, error: ProtocolError, settings: WorkerSettings
) -> int:
    """A task file that cannot be parsed still ends in a result that says so."""
    print(f"orchestrator-worker: {error}", file=sys.stderr)
    handle = try_claim_attempt(
        layout, task_id, 1, worker_id=settings.worker_id, lease_s=settings.lease_s
    )
    if handle is None:
        return RET_NOTHING_TO_CLAIM
    handle.publish_result(
        Result(
            task_id=task_id, status=ResultStatus.FAILED, completed_at=utc_now(), error=str(error)
        )
    )
    return RET_OK


def run_pool(settings: WorkerSettings, stop: StopFlag) -> int:
    """Claim and run pending tasks one after another until none is left."""
    layout = Layout(settings.root).ensure()
    while stop.reason is None:
        board = read_board(layout)
        states = board.states(now=utc_now())
        pending = sorted(
            (
                task_id
                for task_id, state in states.items()
                if next_attempt(board.snapshots[task_id], state) is not None
            ),
            key=lambda task_id: (board.snapshots[task_id].task.created_at or utc_now(), task_id),  # type: ignore[union-attr]
        )
        for task_id in pending:
            handle = claim(layout, task_id, worker_id=settings.worker_id, lease_s=settings.lease_s)
            if handle is not None:
                Attempt(settings, board.snapshots[task_id].task, handle, stop).run()  # type: ignore[arg-type]
                break
        else:
            return RET_OK
    return RET_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orchestrator-worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", metavar="ID", help="run this task")
    which.add_argument("--pool", action="store_true", help="run pending tasks until none is left")
    which.add_argument(
        "--warm",
        action="store_true",
        help="wait idle for a task of --profile, run it and exit (a warm pool's worker; ends "
        "idle on SIGTERM or when its pool stops beating)",
    )
    p.add_argument(
        "--pool-name",
        metavar="NAME",
        help=f"with --warm: the pool (default ${ENV_POOL})",
    )
    p.add_argument(
        "--profile",
        metavar="NAME",
        help=f"with --warm: the profile of the tasks to take (default ${ENV_POOL_PROFILE} or "
        f"{DEFAULT_PROFILE})",
    )
    p.add_argument(
        "--force", action="store_true", help="with --task: retry even when max_attempts is used up"
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        help="orchestration root (default $ORCHESTRATION_DIR or /orchestration)",
    )
    p.add_argument(
        "--worker-id",
        metavar="ID",
        help="name in claims and status (default $WORKER_ID or host:pid)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    clock = StepClock.from_process_start()  # its first step: the interpreter and the imports
    args = parser().parse_args(argv)
    try:
        settings = settings_from_env(args)
    except ValueError as error:
        print(f"orchestrator-worker: bad setting: {error}", file=sys.stderr)
        return RET_USAGE
    if not settings.root.is_dir():
        print(
            f"orchestrator-worker: {settings.root} does not exist; mount the orchestration volume or pass --root.",
            file=sys.stderr,
        )
        return RET_USAGE
    stop = StopFlag()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set(f"stopped by {signal.Signals(signum).name} (docker stop or Ctrl-C)")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if args.pool:
            return run_pool(settings, stop)
        if args.warm:
            pool = args.pool_name or settings.pool
            if not pool:
                print(
                    f"orchestrator-worker: --warm needs a pool; give --pool-name or set {ENV_POOL} "
                    "(orchestrator pool does).",
                    file=sys.stderr,
                )
                return RET_USAGE
            from .pool import run_warm  # a cold worker never waits: not imported at its start

            profile = args.profile or settings.pool_profile or DEFAULT_PROFILE
            return run_warm(settings, stop, pool, profile)
        return run_one(settings, args.task, stop, force=args.force, clock=clock)
    except ProtocolError as error:
        print(f"orchestrator-worker: {error}", file=sys.stderr)
        return RET_CRASHED


if __name__ == "__main__":
    sys.exit(main())
