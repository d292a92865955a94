"""Planning: the plan's validation (one sentence per problem), the scripted planner, ``task
create --plan`` with a plan file, and ``orchestrator plan`` / ``run --plan`` with the local
backend (real worker processes, the real ``claude`` against the scripted model through the
gateway, real git), including a greenfield run exported with ``--output-dir``."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from orchestration_protocol import Layout, parse_plan, plan_json_schema, plan_problems
from scripted_model.planner import derive_plan
from tests.gitrepo import branches, make_remote

pytestmark = pytest.mark.usefixtures("cli_process")

DEMO = {
    "README.md": "# Demo app\n",
    "app/index.html": "<h1>Demo</h1>\n",
    "app/styles.css": ":root {\n  --accent: #0066cc;\n}\n",
    "app/settings.js": "export const settings = {\n  language: 'en',\n};\n",
}
REQUEST = "Add input validation to the login form and write tests for it"


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path, DEMO)


@pytest.fixture(autouse=True)
def stop_simulation(layout: Layout, cli_process):
    """The local scripted model and gateway a test started stop with it."""
    yield
    from manager.cli import main

    if layout.root.exists():
        main(["--root", str(layout.root), "cleanup", "--all", "--simulation", "--gateway"])


def planned(*tasks: dict) -> dict:
    return {"request": "r", "tasks": [{"title": t["id"], "prompt": "p", **t} for t in tasks]}


INVALID = {
    "cycle": (
        planned({"id": "a", "depends_on": ["b"]}, {"id": "b", "depends_on": ["a"]}),
        "The dependencies form a cycle (a -> b -> a); remove one of them.",
    ),
    "unknown-dependency": (
        planned({"id": "a", "depends_on": ["ghost"]}),
        "Task 'a' depends on 'ghost', which is not a task of the plan; fix the id or drop the "
        "dependency.",
    ),
    "duplicate-id": (
        planned({"id": "a"}, {"id": "a"}),
        "The id 'a' is used by 2 tasks; make ids unique.",
    ),
    "same-file": (
        planned({"id": "a", "files": ["app/x.js", "README.md"]}, {"id": "b", "files": ["app/x.js"]}),
        "Predicted merge conflict: tasks a, b all own app/x.js; give each file to one task, or "
        "make one depend on the other alone.",
    ),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_each_plan_problem_is_one_sentence(name: str) -> None:
    document, sentence = INVALID[name]
    assert plan_problems(parse_plan(document)) == [sentence]


def test_owning_a_file_after_a_dependency_is_no_conflict() -> None:
    """A task with one dependency starts from its branch (also transitively); a task with two
    starts from the base branch, so sharing a file with one of them is still a conflict."""
    chain = planned({"id": "a", "files": ["x.py"]}, {"id": "b", "files": ["x.py"], "depends_on": ["a"]},
                    {"id": "c", "files": ["x.py"], "depends_on": ["b"]})
    assert plan_problems(parse_plan(chain)) == []
    join = planned({"id": "a", "files": ["x.py"]}, {"id": "b"},
                   {"id": "c", "files": ["x.py"], "depends_on": ["a", "b"]})
    assert plan_problems(parse_plan(join)) == [
        "Predicted merge conflict: tasks a, c all own x.py; give each file to one task, or make "
        "one depend on the other alone."]


@pytest.mark.parametrize("name", list(INVALID))
def test_task_create_refuses_an_invalid_plan_file(
    name: str, cli, layout: Layout, tmp_path: Path
) -> None:
    document, sentence = INVALID[name]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(document))
    code, _, err = cli("task", "create", "--plan", str(path))
    assert code == 2
    assert sentence in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(layout.tasks_dir.glob("*.json"))


def test_task_create_runs_a_plan_file_and_renames_on_request(
    cli, layout: Layout, tmp_path: Path
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(derive_plan(REQUEST, list(DEMO))))
    code, out, _ = cli("task", "create", "--plan", str(path), "--json")
    assert code == 0
    tasks = {task["id"]: task for task in json.loads(out)}
    assert tasks["input-validation-tests"]["depends_on"] == ["input-validation-login"]
    assert tasks["input-validation-tests"]["branch"] == "orchestrator/input-validation-login"
    code, _, err = cli("task", "create", "--plan", str(path))
    assert code == 2 and "already exists" in err
    code, out, _ = cli("task", "create", "--plan", str(path), "--rename", "--json")
    again = {task["id"]: task for task in json.loads(out)}
    assert again["input-validation-tests-2"]["depends_on"] == ["input-validation-login-2"]
    assert again["input-validation-tests-2"]["branch"] == "orchestrator/input-validation-login-2"


def test_the_scripted_planner_is_deterministic_and_sound() -> None:
    for request in (REQUEST, "Build a todo list app with add/delete/complete",
                    "Add a CONTRIBUTING guide", "Add logging, retries and a config file; then document it"):
        for files in ([], list(DEMO)):
            plan = derive_plan(request, files, 3)
            assert plan == derive_plan(request, files, 3)
            assert 2 <= len(plan["tasks"]) <= 4
            assert plan_problems(parse_plan(plan)) == []
            assert plan["executor_budget"] <= 3
            jsonschema.validate(plan, plan_json_schema())


def test_schema_publishes_the_plan(cli) -> None:
    code, out, _ = cli("schema", "plan")
    assert code == 0 and json.loads(out) == plan_json_schema()


def test_plan_simulated_in_a_worker_matches_the_schema(cli, layout: Layout, remote: Path) -> None:
    code, out, err = cli("plan", REQUEST, "-n", "3", "--simulate", "--json")
    assert code == 0, err
    plan = json.loads(out)
    jsonschema.validate(plan, plan_json_schema())
    assert [t["id"] for t in plan["tasks"]] == ["input-validation-login", "input-validation-tests"]
    assert plan["tasks"][0]["files"] == ["app/input-validation-login.js"]  # beside app/settings.js
    assert plan["strategy"] == "sequential" and plan["executor_budget"] == 1
    planner = [p for p in layout.tasks_dir.glob("plan-*.json")]
    assert len(planner) == 1
    result = json.loads(layout.result_file(planner[0].stem).read_text())
    assert result["status"] == "success" and result["plan"] == plan
    assert "head_commit" not in result and not result.get("files_changed")
    assert branches(remote) == ["main"]  # the planner pushed nothing


def test_plan_on_this_host_writes_the_plan_file(cli, remote: Path, tmp_path: Path) -> None:
    target = tmp_path / "plan.yaml"
    code, out, err = cli("plan", "Add a footer to the page", "--local", "--simulate", "-o", str(target))
    assert code == 0, err
    assert "footer-page" in out and "predicted conflicts: none" in out and "wave 2:" in out
    assert [t["id"] for t in yaml.safe_load(target.read_text())["tasks"]] == [
        "footer-page", "footer-page-tests"]


def test_greenfield_run_plans_executes_merges_and_exports(
    cli, layout: Layout, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("REPO_URL")
    out_dir = tmp_path / "todo"
    code, out, err = cli(
        "run", "--plan", "Build a todo list app with add/delete/complete", "--max-executors", "3",
        "--simulate", "--output-dir", str(out_dir), "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    ids = ["todo-list", "todo-add", "todo-delete", "todo-complete"]
    assert [t["id"] for t in report["tasks"]] == ids and report["succeeded"]
    assert report["plan"]["strategy"] == "waves" and report["plan"]["waves"][0] == ["todo-list"]
    assert [t["outcome"] for t in report["merge"]["tasks"]] == ["merged"] * 4
    assert report["total_cost_usd"] > 0
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file() and ".git" not in p.parts)
    assert files == ["index.html", "src/todo-add.js", "src/todo-complete.js", "src/todo-delete.js",
                     "src/todo-list.js"]
    assert "export function todoDelete" in (out_dir / "src/todo-delete.js").read_text()
    greenfield = list((layout.root / "git" / "greenfield").glob("*.git"))
    assert len(greenfield) == 1


def test_a_task_with_no_repository_fails_before_any_worker(cli, layout: Layout, monkeypatch) -> None:
    monkeypatch.delenv("REPO_URL")
    code, _, _ = cli("task", "create", "--id", "lonely", "--agent", "command", "true")
    assert code == 0
    code, _, err = cli("spawn", "default", "lonely", "--simulate")
    assert code == 2
    assert err.startswith("error: Task lonely names no repository and none is configured;")
    assert err.count("\n") == 1
    assert not layout.status_file("lonely").exists() and not layout.result_file("lonely").exists()




HOSTILE_PLANNER = {
    "scenarios": [{
        "name": "hostile-planner",
        "match": "hostile planner",
        "turns": [
            {"tool_uses": [{"name": "Bash", "input": {"command": (
                "echo pwned > planted.txt && git add -A && git -c user.name=x "
                "-c user.email=x@x commit -qm pwned && git push origin HEAD:refs/heads/pwned; "
                "echo done")}}]},
            {"tool_uses": [{"name": "Write", "input": {
                "file_path": "{cwd}/written.txt", "content": "pwned\n"}}]},
        ],
        "structured_output": {"tasks": [{"id": "only", "title": "t", "prompt": "p"}]},
    }]
}


def test_a_hostile_planner_changes_nothing(
    cli, layout: Layout, remote: Path, tmp_path: Path, monkeypatch
) -> None:
    """Beside the honest planner above: a planning agent that commits, pushes and writes keeps
    nothing: Write is not offered, the runtime commits and pushes nothing for a plan task."""
    scenarios = tmp_path / "hostile.json"
    scenarios.write_text(json.dumps(HOSTILE_PLANNER))
    monkeypatch.setenv("SCRIPTED_MODEL_SCENARIOS", str(scenarios))
    code, out, err = cli("plan", "A hostile planner <request>x</request>", "--simulate", "--json")
    assert code == 0, err
    assert [t["id"] for t in json.loads(out)["tasks"]] == ["only"]
    planner = next(layout.tasks_dir.glob("plan-*.json")).stem
    result = json.loads(layout.result_file(planner).read_text())
    assert "head_commit" not in result and not result.get("files_changed")
    assert "branch" not in result and not result.get("pushed")
    log = layout.log_file(planner).read_text()
    assert "[tool] Bash: echo pwned" in log and "No such tool available: Write" in log
    from orchestration_protocol.mirrors import mirror_dir

    mirror = mirror_dir(layout, str(remote))
    assert branches(mirror) == ["main"] and branches(remote) == ["main"]


def test_the_scripted_managers_summary_is_honest() -> None:
    """The manager's final message comes from what merge and status printed: a failed worker is
    reported as failed, and then nothing is "ready for review"."""
    from scripted_model.programs import summary

    status = {"tasks": [
        {"id": "a", "state": "success", "cost_usd": 0.07, "files_changed": ["app/a.js"]},
        {"id": "b", "state": "failed", "cost_usd": 0.01, "error": "claude failed: api_error"},
    ]}
    merge = {"pushed": True, "tasks": [
        {"task_id": "a", "outcome": "merged", "files": ["app/a.js"]},
        {"task_id": "b", "outcome": "skipped"},
    ]}
    passed = {"checks": [{"passed": True, "check": {"passed": True}}]}
    failing = {"checks": [{"passed": False, "check": {"passed": False}}]}
    text = summary("Do it", ["a", "b"], merge, status, passed)
    assert text.startswith("Not done: 1 of 2 tasks did not succeed.")
    assert "ready for review" not in text
    assert "- b: failed, skipped (no files), $0.01: claude failed: api_error" in text
    assert "Total cost: $0.08 across 2 workers." in text
    assert "orchestrator task retry b" in text
    merge["tasks"][1] = {"task_id": "b", "outcome": "merged", "files": ["b.js"]}
    status["tasks"][1].update(state="success", error=None)
    assert summary("Do it", ["a", "b"], merge, status, passed).startswith(
        'Done: "Do it" is ready for review on branch orchestrator/integration: checks passed.')
    assert summary("Do it", ["a", "b"], merge, status, failing).startswith(
        "Not done: the check failed on orchestrator/integration.")
    assert "nothing tested it" in summary("Do it", ["a", "b"], merge, status, None)
