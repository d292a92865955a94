"""The manager's side of the loop on the real Docker engine, with the real worker image, the real
``claude`` binary against the scripted model (scripted_model/scenarios/checks.json), real git
and the real check commands:

- ``orchestrator run`` of a change that breaks the check: the dispatcher asks for the repair
  round itself, the task's own session is resumed on its branch, and the check passes;
- a failure that cannot be fixed stops after ``max_repairs`` with the check's summary;
- after the merge, a failing integration check is attributed to the one branch that breaks it
  (re-checks with one branch left out), that task gets a repair round with the integration
  failure, and the merge is checked again and passes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from manager.backends import make_backend
from manager.config import resolve_settings
from manager.run.dispatch import Dispatcher
from manager.run.integration import close_the_loop
from manager.run.spawn import prepare_spawning
from orchestration_protocol import AgentKind, Layout, Task, read_task_state, utc_now, write_task
from orchestration_protocol.attribution import Blame
from tests.gitrepo import make_remote
from tests.manager.test_manager_docker import engine, env, orchestrator, result_of
from tests.worker.test_worker_docker import containers, worker_image

pytestmark = [pytest.mark.docker, pytest.mark.e2e]
__all__ = ["containers", "engine", "env", "worker_image"]

PASSING_TEST = "import unittest\n\n\nclass Base(unittest.TestCase):\n    def test_base(self):\n        self.assertTrue(True)\n"


@pytest.fixture
def simulation(env: dict[str, str]):
    """The manager's environment for simulated workers, the profile's check the repository's
    unittest; the gateway is removed afterwards."""
    profiles = Path(env["ORCHESTRATOR_PROFILES"])
    profiles.write_text(profiles.read_text().replace("  cpus: 1\n", "  cpus: 1\n  check: python3 -m unittest -v\n", 1))
    yield env
    orchestrator(env, "cleanup", "--simulation")


def test_run_repairs_a_broken_check_in_the_resumed_session(simulation: dict[str, str], layout: Layout) -> None:
    done = orchestrator(simulation, "run", "--simulate", "--json", "Add a greeting. scripted: break the check",
                        timeout=400)
    snapshot, state = read_task_state(layout, "task-001", now=utc_now())
    result = result_of(layout, "task-001")
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:], result.error)
    assert state == "success" and snapshot.attempt == 2
    assert [(r.number, r.kind) for r in snapshot.rounds] == [(2, "repair")]
    assert result.round is not None and result.round.kind == "repair" and result.round.session == "resumed"
    assert result.check is not None and result.check.passed
    shown = orchestrator(simulation, "task", "show", "task-001")
    assert "round: repair 2" in shown.stdout and "round 2: repair, attempt 2" in shown.stdout
    assert "check: passed" in shown.stdout


def test_an_unfixable_check_stops_after_max_repairs(simulation: dict[str, str], layout: Layout) -> None:
    env = {**simulation, "ORCHESTRATOR_MAX_REPAIRS": "1"}
    done = orchestrator(env, "run", "--simulate", "--json", "Add a clock. scripted: unfixable", timeout=400)
    snapshot, state = read_task_state(layout, "task-001", now=utc_now())
    result = result_of(layout, "task-001")
    assert done.returncode == 1
    assert state == "failed" and snapshot.attempt == 2 and snapshot.repairs_requested == 1
    assert (result.error or "").startswith("check failed:"), result.error
    assert '"succeeded": false' in done.stdout


def test_an_integration_failure_goes_back_to_the_branch_that_broke_it(
    simulation: dict[str, str], layout: Layout, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path / "integration", {"README.md": "# app\n", "test_base.py": PASSING_TEST})
    settings = resolve_settings(layout.root, simulate=True, repo_url=str(remote), env=simulation)
    context = prepare_spawning(settings, make_backend(settings.engine_config()))
    # its own check looks only at its own new test, so the bug passes its branch's check
    write_task(layout, Task(id="greeter", prompt="Add a greeting. scripted: break the check",
                            repo=str(remote), check=["python3 -c pass"]))
    write_task(layout, Task(id="notes", prompt="echo notes > NOTES.md", agent=AgentKind.COMMAND,
                            repo=str(remote)))
    dispatcher = Dispatcher(context, max_workers=2, scope=["greeter", "notes"])
    assert dispatcher.run(until_settled=True).progress.succeeded
    dispatcher.wait_for_workers()
    report, clone = close_the_loop(context, str(remote), "main", ["greeter", "notes"])
    shutil.rmtree(clone.parent, ignore_errors=True)
    assert [a.blame for a in report.attributions] == [Blame.BRANCH]
    assert report.attributions[0].repair == "greeter"
    assert report.check_state == "passed", report.check
    assert report.repaired == ["greeter: repaired after the integration check failed"]
    snapshot, _ = read_task_state(layout, "greeter", now=utc_now())
    assert [(r.kind, r.integration) for r in snapshot.rounds] == [("repair", True)]
    assert result_of(layout, "greeter").round.session == "resumed"  # type: ignore[union-attr]


def test_a_conflict_gets_a_resolver_and_the_merge_goes_on(
    simulation: dict[str, str], layout: Layout, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path / "conflict", {"README.md": "# app\n", "test_base.py": PASSING_TEST})
    settings = resolve_settings(layout.root, simulate=True, repo_url=str(remote), env=simulation)
    context = prepare_spawning(settings, make_backend(settings.engine_config()))
    for task_id, colour in (("blue", "blue"), ("green", "green")):
        write_task(layout, Task(id=task_id, prompt=f"printf 'accent: {colour}\\n' > accent.txt",
                                agent=AgentKind.COMMAND, repo=str(remote)))
    dispatcher = Dispatcher(context, max_workers=2, scope=["blue", "green"])
    assert dispatcher.run(until_settled=True).progress.succeeded
    dispatcher.wait_for_workers()
    report, clone = close_the_loop(context, str(remote), "main", ["blue", "green"])
    try:
        merged = (clone / "accent.txt").read_text()
    finally:
        shutil.rmtree(clone.parent, ignore_errors=True)
    assert report.resolvers == {"green": "resolve-green-1"}
    assert report.repaired == ["green: conflict resolved by resolve-green-1"]
    assert "accent: blue" in merged and "accent: green" in merged and "<<<<<<<" not in merged
    assert report.merge.ok and report.check_state == "passed", report.check
    resolver = result_of(layout, "resolve-green-1")
    assert resolver.round is not None and resolver.round.kind == "resolve"
