"""Ended workers go once their logs are safe in the volume; running ones and those whose
attempt has no result yet stay (manager/run/reaper.py), on every engine."""

from __future__ import annotations

from datetime import timedelta

from manager.run.reaper import remove_ended_workers, worker_log_file
from orchestration_protocol import Result, read_model, utc_now
from tests.engines import EngineKit
from tests.test_engines import running, wait_until


def test_ended_workers_are_removed_after_their_logs_are_kept(each_engine: EngineKit) -> None:
    kit = each_engine
    kit.remove_ended_after_s = 0
    kit.task("quick")
    kit.task("killed", slow=True, max_attempts=1)
    run = kit.dispatch(max_workers=2)
    try:
        wait_until(lambda: "killed" in running(kit.layout), what="the slow worker running")
        kit.kill("killed")  # no result of its own: recovery writes one, then the reaper may go
        run.wait()
    finally:
        run.stop()
    backend = kit.backend()
    wait_until(lambda: not any(w.running for w in backend.workers.all()), what="every end")
    # one more pass of the reaper, as the next tick of a long-running dispatcher would make
    remove_ended_workers(kit.layout, backend, backend.workers.all(), utc_now(), 0)
    assert [w for w in backend.workers.all() if w.task_id in ("quick", "killed")] == []
    for task_id in ("quick", "killed"):
        assert worker_log_file(kit.layout, task_id, 1).exists()
    killed = read_model(kit.layout.result_file("killed"), Result, "killed")
    assert (killed.status, killed.exit_code, killed.worker_id) == ("failed", 137, "manager")


def test_a_worker_whose_result_is_recent_or_missing_stays(each_engine: EngineKit) -> None:
    kit = each_engine
    kit.task("recent")
    kit.dispatch(max_workers=1).wait()
    backend = kit.backend()

    def ended_workers() -> list:  # type: ignore[type-arg]
        return [w for w in backend.workers.all() if w.task_id == "recent" and not w.running]

    wait_until(lambda: bool(ended_workers()), what="the worker's end")  # the result comes first
    ended = ended_workers()
    assert remove_ended_workers(kit.layout, backend, ended, utc_now(), 3600) == []
    assert remove_ended_workers(kit.layout, backend, ended, utc_now(), None) == []
    later = utc_now() + timedelta(hours=2)
    assert remove_ended_workers(kit.layout, backend, ended, later, 3600) == [ended[0].name]
