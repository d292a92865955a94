"""Programs: scenarios whose replies are computed from the conversation instead of written out.

A scenario with ``"program": NAME`` answers with :data:`PROGRAMS` ``[NAME]``; a program sees the
prompt, the working directory and every tool call since the prompt with its result, and returns
the next reply: tool calls, or the final text. All are deterministic.

- ``plan``: the planning worker's side. ``git ls-files``, then the plan derived from the request
  and those files (:mod:`scripted_model.planner`) through the StructuredOutput tool that Claude
  Code's ``--json-schema`` offers, then a one-line summary.
- ``work``: a worker on a planned task. Reads the files its prompt owns, appends a short
  addition to each existing one and writes each new one (content fitting the extension), then
  ``git status --short``; the final text says what changed.
- ``manage``: the interactive manager on any request, through the real CLI: ``orchestrator
  plan``, ``task create --plan``, ``spawn`` (or ``dispatch`` when tasks depend on others),
  ``wait``, ``merge --push``, ``status``; the final text is built from what those printed, so a
  failed worker is reported as failed.
- ``repair`` and ``resolve`` (:mod:`scripted_model.repairs`): a repair round that fixes the code
  only when the resumed conversation holds its earlier turns, and a resolver of merge conflicts.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from .conversation import STRUCTURED_OUTPUT_TOOL, Conversation, Exchange
from .planner import OWNED_LINE, derive_plan
from .repairs import REPAIR_PROGRAMS
from .steps import Step, _bash, _done

REQUEST = re.compile(r"<request>\s*(.*?)\s*</request>", re.S)
EXECUTORS = re.compile(r"at most (\d+) (?:executors|workers)", re.I)


# --- plan ------------------------------------------------------------------------------------


def planning_request(prompt: str) -> tuple[str, int]:
    """The request to plan (inside ``<request>`` tags, else the whole prompt) and the executors."""
    found = REQUEST.search(prompt)
    executors = EXECUTORS.search(prompt)
    return (found[1] if found else prompt.strip()), int(executors[1]) if executors else 4


def plan_program(conversation: Conversation) -> Step:
    request, executors = planning_request(conversation.prompt)
    listed = _done(conversation, "Bash")
    if not listed:
        return Step("Reading the repository's files.",
                    [_bash("git ls-files", "List the repository's files")])
    files = [] if listed[0].is_error else listed[0].result.splitlines()
    plan = derive_plan(request, [f for f in files if f and not f.startswith("(")], executors)
    if conversation.output_schema is not None and not _done(conversation, STRUCTURED_OUTPUT_TOOL):
        return Step(f"Planned {len(plan['tasks'])} tasks.", [(STRUCTURED_OUTPUT_TOOL, plan)])
    if conversation.output_schema is None:
        return Step(json.dumps(plan, indent=2))
    ids = ", ".join(task["id"] for task in plan["tasks"])
    return Step(f"Planned {len(plan['tasks'])} tasks ({ids}); {plan['summary']}")


# --- work ------------------------------------------------------------------------------------


def owned_files(prompt: str) -> list[str]:
    """The files a planned prompt gives its worker."""
    for line in prompt.splitlines():
        if line.startswith(OWNED_LINE):
            return [f.strip() for f in line[len(OWNED_LINE) :].rstrip(".").split(",") if f.strip()]
    return []


def addition(path: str, title: str, new: bool) -> str:
    """What a scripted worker writes into ``path`` for the task ``title``."""
    suffix = PurePosixPath(path).suffix
    name = re.sub(r"[^a-z0-9]+", "_", PurePosixPath(path).stem.lower()).strip("_") or "change"
    camel = re.sub(r"_(\w)", lambda m: m[1].upper(), name)
    if suffix == ".py":
        body = (f"def test_{name.removeprefix('test_')}():\n    assert True\n"
                if name.startswith("test_") else
                f"def {name}():\n    \"\"\"{title}.\"\"\"\n    return True\n")
        text = f"# {title}\n{body}"
    elif suffix in (".js", ".ts", ".jsx", ".tsx"):
        text = (f"// {title}\ntest('{name}', () => {{\n  expect(true).toBe(true);\n}});\n"
                if ".test" in path else
                f"// {title}\nexport function {camel}() {{\n  return true;\n}}\n")
    elif suffix == ".css":
        text = f"/* {title} */\n.{name.replace('_', '-')} {{\n  display: block;\n}}\n"
    elif suffix == ".html":
        text = (f"<!doctype html>\n<title>{title}</title>\n<main id=\"app\"></main>\n"
                if new else f"<!-- {title} -->\n")
    elif suffix == ".md":
        text = f"# {title}\n\n{title}.\n" if new else f"## {title}\n\n{title}.\n"
    else:
        text = f"# {title}\n"
    return text if new else f"\n{text}"


def _missing(exchange: Exchange) -> bool:
    return exchange.is_error or "does not exist" in exchange.result[:200].lower()


def work_program(conversation: Conversation) -> Step:
    files = owned_files(conversation.prompt)
    cwd = conversation.cwd or "."
    title = conversation.prompt.strip().splitlines()[0].rstrip(".") if conversation.prompt.strip() else "Change"
    reads = _done(conversation, "Read")
    if not reads and files:
        return Step("Reading the files this task owns.",
                    [("Read", {"file_path": f"{cwd}/{path}"}) for path in files])
    if not _done(conversation, "Write") and not any(
        e.input.get("description") == "Append to the files" for e in _done(conversation, "Bash")
    ) and files:
        missing = {e.input.get("file_path") for e in reads if _missing(e)}
        uses: list[tuple[str, dict[str, Any]]] = []
        appends = []
        for path in files:
            full = f"{cwd}/{path}"
            if full in missing:
                uses.append(("Write", {"file_path": full, "content": addition(path, title, True)}))
            else:
                text = addition(path, title, False)
                appends.append(f"cat >> {shlex.quote(path)} <<'SCRIPTED_EOF'\n{text}SCRIPTED_EOF")
        if appends:
            uses.append(_bash("\n".join(appends), "Append to the files"))
        return Step("Making the change.", uses)
    status = [e for e in _done(conversation, "Bash") if e.input.get("command") == "git status --short"]
    if not status:
        return Step("", [_bash("git status --short", "Show what changed")])
    changed = ", ".join(files) or "nothing"
    return Step(f"{title}: done. Changed {changed}.\n{status[0].result.strip()}")


# --- manage ----------------------------------------------------------------------------------


def _json_of(text: str) -> Any:
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        return None
    try:
        return json.JSONDecoder().raw_decode(text[start:])[0]
    except ValueError:
        return None


def _by(conversation: Conversation, description: str) -> Exchange | None:
    for exchange in conversation.exchanges:
        if exchange.name == "Bash" and exchange.input.get("description") == description:
            return exchange
    return None


def _failed_text(what: str, exchange: Exchange) -> Step:
    said = " ".join(exchange.result.split())[:600] or "no output"
    return Step(f"I could not {what}: {said}\n\nNothing was merged; fix the cause and ask again.")


def manage_program(conversation: Conversation) -> Step:
    request = " ".join(conversation.prompt.split())
    plan_file = f"/tmp/orchestrator-plan-{conversation.placeholders()['prompt_hash']}.json"
    planned = _by(conversation, "Plan the request")
    if planned is None:
        command = f"orchestrator plan {shlex.quote(request)} --simulate -o {plan_file}"
        return Step("Let me plan this: `orchestrator plan` reads the repository, splits the "
                    "request into tasks that own different files, and predicts conflicts.",
                    [_bash(command, "Plan the request", 600000)])
    if planned.is_error:
        return _failed_text("plan the request", planned)
    created = _by(conversation, "Create the tasks")
    if created is None:
        shown = "\n".join(line for line in planned.result.splitlines()[:40] if line.strip())
        clean = "predicted conflicts: none" in planned.result
        verdict = ("It predicts no merge conflicts (every file has one owner), so I create its "
                   "tasks." if clean else "Creating its tasks.")
        return Step(f"The plan:\n\n```\n{shown}\n```\n\n{verdict}",
                    [_bash(f"orchestrator task create --plan {plan_file} --rename --json", "Create the tasks")])
    tasks = _json_of(created.result)
    if created.is_error or not isinstance(tasks, list):
        return _failed_text("create the tasks", created)
    ids = [str(task.get("id")) for task in tasks if isinstance(task, dict)]
    joined = " ".join(ids)
    started = _by(conversation, "Start the workers")
    if started is None:
        if any(task.get("depends_on") for task in tasks if isinstance(task, dict)):
            command = f"orchestrator dispatch {joined} --until-done --simulate"
            text = "Some tasks wait for others, so `orchestrator dispatch` starts each when it may."
        else:
            command = " && ".join(f"orchestrator spawn default {i} --simulate" for i in ids)
            text = "Starting one worker per task."
        return Step(text, [_bash(command, "Start the workers", 600000)])
    waited = _by(conversation, "Wait for the workers")
    if waited is None:
        return Step("Waiting for the workers to finish.",
                    [_bash(f"orchestrator wait {joined} --timeout 540", "Wait for the workers", 600000)])
    merged = _by(conversation, "Merge the branches")
    if merged is None:
        return Step("Merging the branches that succeeded into orchestrator/integration.",
                    [_bash(f"orchestrator merge {joined} --push --json", "Merge the branches")])
    checked = _by(conversation, "Check the merge")
    if checked is None:
        return Step("Running the repository's check on orchestrator/integration.",
                    [_bash("orchestrator check --integration --simulate --json", "Check the merge", 600000)])
    status = _by(conversation, "Read the results")
    if status is None:
        return Step("", [_bash(f"orchestrator status {joined} --json", "Read the results")])
    return Step(summary(request, ids, _json_of(merged.result), _json_of(status.result),
                        _json_of(checked.result)))


def check_verdict(check: Any) -> str:
    """``passed``, ``failed`` or ``none`` from what ``check --json`` printed (None: not run)."""
    checks = [c for c in (check or {}).get("checks", []) if isinstance(c, dict)]
    if not checks or all(c.get("check") is None for c in checks):
        return "none"
    return "passed" if all(c.get("passed") for c in checks) else "failed"


def summary(request: str, ids: list[str], merge: Any, status: Any, check: Any = None) -> str:
    """The manager's final message, from what ``merge --json``, ``status --json`` and
    ``check --integration --json`` printed: "checks passed" only when they did."""
    rows = {row.get("id"): row for row in (status or {}).get("tasks", []) if isinstance(row, dict)}
    merges = {t.get("task_id"): t for t in (merge or {}).get("tasks", []) if isinstance(t, dict)}
    failed = [i for i in ids if rows.get(i, {}).get("state") != "success"]
    conflicts = [i for i in ids if merges.get(i, {}).get("outcome") == "conflict"]
    verdict = check_verdict(check)
    lines = []
    if not failed and not conflicts and merge and verdict == "passed":
        lines.append(f"Done: \"{request}\" is ready for review on branch orchestrator/integration: checks passed.")
    elif not failed and not conflicts and merge and verdict == "none":
        lines.append(f"Merged: \"{request}\" is on branch orchestrator/integration, but no check "
                     "applies, so nothing tested it (add 'check:' to .orchestrator.yaml).")
    else:
        problems = [f"{len(failed)} of {len(ids)} tasks did not succeed" if failed else "",
                    f"{len(conflicts)} conflicted" if conflicts else "",
                    "the check failed on orchestrator/integration" if verdict == "failed" else ""]
        lines.append(f"Not done: {' and '.join(p for p in problems if p)}.")
    lines.append("")
    total = 0.0
    for task_id in ids:
        row, outcome = rows.get(task_id, {}), merges.get(task_id, {})
        cost = row.get("cost_usd") or 0.0
        total += cost
        files = ", ".join(outcome.get("files") or row.get("files_changed") or []) or "no files"
        state = row.get("state", "unknown")
        detail = f"{state}, {outcome.get('outcome', 'not merged')} ({files}), ${cost:.2f}"
        if state != "success":
            detail += f": {row.get('error') or 'see orchestrator logs ' + task_id}"
        lines.append(f"- {task_id}: {detail}")
    lines.append("")
    if merge and merge.get("pushed"):
        lines.append("The integration branch was pushed to origin/orchestrator/integration.")
    elif merge and merge.get("push_error"):
        lines.append(f"The integration branch was not pushed: {merge['push_error']}")
    lines.append(f"Total cost: ${total:.2f} across {len(ids)} workers.")
    if failed:
        lines.append(f"Next: read `orchestrator logs {failed[0]}`, then `orchestrator task retry "
                     f"{failed[0]} --simulate` or ask me for a better task.")
    else:
        lines.append("Review it with: git diff main...orchestrator/integration")
    return "\n".join(lines)


PROGRAMS: dict[str, Callable[[Conversation], Step]] = {
    "plan": plan_program,
    "work": work_program,
    "manage": manage_program,
}
"""The programs a scenario may name."""

PROGRAMS.update(REPAIR_PROGRAMS)
