"""Benchmark: what planning in a hardened worker container costs over planning on the host.

Run by hand (the project's venv; needs Docker and the built images)::

    .venv/bin/python scripts/bench/plan.py [--runs N] [--json]

Each round, on one demo repository, in the same session of measurements:

- ``orchestrator plan --simulate --local``: Claude Code on this host, in a throwaway clone (the
  baseline: no container, no gateway);
- ``orchestrator plan --simulate``: the default, a planning task run by a worker container
  (claim, clone from the volume's mirror, Claude Code as uid 1000 through the gateway, the plan
  checked into the result).

Both use the scripted planner (three model requests), so the difference is the container path.
The gateway and scripted model are started once before the first round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
ORCHESTRATOR = [sys.executable, "-c", "import sys; from manager.cli import main; sys.exit(main())"]
REQUEST = "Add input validation to the login form and write tests for it"


def orchestrator(env: dict[str, str], *args: str) -> float:
    start = time.monotonic()
    subprocess.run([*ORCHESTRATOR, *args], env=env, check=True,
                   capture_output=True, text=True)
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    os.chmod(scratch, 0o755)
    try:
        remote = scratch / "remote.git"
        subprocess.run([str(REPO_ROOT / "scripts" / "demo-repo.sh"), str(remote)], check=True,
                       capture_output=True)
        root = scratch / "orchestration"
        env = {**os.environ, "REPO_URL": str(remote), "ORCHESTRATION_DIR": str(root),
               "ORCHESTRATOR_BACKEND": "docker", "PYTHONPATH": str(REPO_ROOT)}
        orchestrator(env, "plan", REQUEST, "--simulate", "--json")  # warm: gateway, model, mirror
        local, worker = [], []
        for _ in range(args.runs):
            local.append(orchestrator(env, "plan", REQUEST, "--simulate", "--local", "--json"))
            worker.append(orchestrator(env, "plan", REQUEST, "--simulate", "--json"))
        subprocess.run([*ORCHESTRATOR, "cleanup", "--all", "--gateway"],
                       env=env, capture_output=True, check=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    figures = {
        "runs": args.runs,
        "local_median_s": round(statistics.median(local), 2),
        "worker_median_s": round(statistics.median(worker), 2),
    }
    figures["ratio"] = round(figures["worker_median_s"] / figures["local_median_s"], 2)
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"plan --local (host, baseline): {figures['local_median_s']} s median of {args.runs}")
        print(f"plan (worker container):       {figures['worker_median_s']} s ({figures['ratio']}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
