"""``orchestrator plan``: headless Claude Code reads the repository and returns a plan.

By default the planner is a worker (:mod:`manager.run.plan_task` runs it): a task of kind ``plan`` runs in the ordinary hardened worker
(no secret, no network but the gateway, a lease-bound caller token, the agent as its own uid);
its Claude Code gets ``--json-schema`` (the plan's schema) and no editing tools, and the runtime
puts the checked plan into the result and commits nothing. A warm-pool worker that claims the
task does the same. ``--local`` runs Claude Code on this host instead, in a throwaway clone, with
the host's own credentials (or the scripted model under ``--simulate``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestration_protocol import (
    Plan,
    plan_json_schema,
)
from orchestration_protocol.plans import (
    PLANNER_DISALLOWED_TOOLS,
    PLANNER_PROMPT,
    predicted_conflicts,
    waves,
)

from ..errors import BadInput, PlanFailed
from ..tasks.create import checked_plan

PLAN_TIMEOUT_S = 900.0


def planning_prompt(request: str, executors: int) -> str:
    """What the planner is asked; the request sits between ``<request>`` tags."""
    return (
        "Plan this request for claude-orchestrator: split it into tasks that parallel workers "
        "can do, each owning its own files.\n"
        f"<request>\n{request.strip()}\n</request>\n"
        f"Run at most {executors} executors at once: the executor budget must not exceed it."
    )


@dataclass
class PlanOutcome:
    """A plan and how it was made."""

    plan: Plan
    task_id: str | None = None
    """The planning task, when a worker planned."""
    cost_usd: float | None = None
    """What planning cost."""


def plan_locally(
    request: str, executors: int, source: Path | None, env: dict[str, str],
    *, model: str | None = None,
) -> PlanOutcome:
    """Run the planner on this host in a throwaway clone of ``source`` (a git repository or its
    mirror; None: an empty directory) with ``env`` (the model's URL and credential)."""
    from orchestration_protocol.claude_cli import ClaudeNotFound, find_claude

    try:
        claude = str(find_claude())
    except ClaudeNotFound as error:
        raise BadInput(f"The claude CLI is not installed here ({error}).") from error
    scratch = Path(tempfile.mkdtemp(prefix="orchestrator-plan-"))
    try:
        work = scratch / "repo"
        if source is not None:
            done = subprocess.run(["git", "clone", "--quiet", str(source), str(work)],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise BadInput(f"Cannot read the repository {source} ({done.stderr.strip()[:200]}).")
        else:
            work.mkdir()
            subprocess.run(["git", "init", "--quiet", str(work)], check=False)
        command = [claude, "-p", "--output-format", "json", "--json-schema",
                   json.dumps(plan_json_schema()), "--disallowedTools", *PLANNER_DISALLOWED_TOOLS,
                   "--append-system-prompt", PLANNER_PROMPT, "--dangerously-skip-permissions"]
        if model:
            command += ["--model", model]
        done = subprocess.run(command, input=planning_prompt(request, executors), cwd=work,
                              env={**env, "HOME": str(scratch / "home")}, capture_output=True,
                              text=True, check=False, timeout=PLAN_TIMEOUT_S)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    try:
        outcome = json.loads(done.stdout)
    except ValueError:
        said = " ".join((done.stderr or done.stdout).split())[:300] or f"exit {done.returncode}"
        raise PlanFailed(f"The local planner failed: {said}.") from None
    output = outcome.get("structured_output") if isinstance(outcome, dict) else None
    if output is None:
        said = " ".join(str(outcome.get("result", "")).split())[:300]
        raise PlanFailed(f"The local planner gave no plan: {said or 'no structured output'}.")
    return PlanOutcome(checked_plan(output, "the local planner"), None,
                       outcome.get("total_cost_usd"))


def local_planner_env(simulate_url: str | None, api_key: str | None) -> dict[str, str]:
    """The local planner's environment: this one, pointed at the scripted model when simulating."""
    env = dict(os.environ)
    env.update(DISABLE_TELEMETRY="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    if os.geteuid() == 0:
        env["IS_SANDBOX"] = "1"
    if simulate_url:
        for name in [n for n in env if n.startswith(("ANTHROPIC_", "CLAUDE_CODE_USE", "AWS_"))]:
            env.pop(name)
        env.update(ANTHROPIC_BASE_URL=simulate_url, ANTHROPIC_API_KEY=api_key or "")
    return env


# --- showing and saving ------------------------------------------------------------------------


def plan_document(plan: Plan) -> dict[str, Any]:
    """The plan as JSON data, with its waves and (none, once checked) predicted conflicts."""
    document = plan.model_dump(mode="json", exclude_none=True)
    document["waves"] = waves(plan)
    document["predicted_conflicts"] = [
        {"tasks": list(ids), "files": files} for ids, files in predicted_conflicts(plan).items()
    ]
    return document


def save_plan(plan: Plan, path: Path) -> None:
    """Write the plan as JSON (``.json``) or YAML (anything else)."""
    data = plan.model_dump(mode="json", exclude_none=True)
    text = (json.dumps(data, indent=2) + "\n" if path.suffix == ".json"
            else yaml.safe_dump(data, sort_keys=False, width=100))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def describe_plan(plan: Plan) -> str:
    """The plan as lines a person reads."""
    lines = [
        f"Plan: {len(plan.tasks)} tasks, complexity {plan.complexity}, {plan.strategy}, "
        f"executor budget {plan.executor_budget}." + (f" {plan.summary}" if plan.summary else ""),
    ]
    width = max(len(task.id) for task in plan.tasks)
    for number, wave in enumerate(waves(plan), start=1):
        lines.append(f"  wave {number}:")
        for task_id in wave:
            task = next(t for t in plan.tasks if t.id == task_id)
            after = f" (after {', '.join(task.depends_on)})" if task.depends_on else ""
            lines.append(f"    {task.id:<{width}}  {task.title}{after}")
            lines.append(f"    {'':<{width}}  files: {', '.join(task.files) or '(none named)'}")
    conflicts = predicted_conflicts(plan)
    lines.append("  predicted conflicts: " + (
        "; ".join(f"{', '.join(ids)} on {', '.join(files)}" for ids, files in conflicts.items())
        or "none (every file has one owner)"))
    lines += [f"  note: {note}" for note in plan.notes]
    return "\n".join(lines)
