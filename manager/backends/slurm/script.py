"""A SLURM job's batch script: it starts the worker's container on the node it lands on with the
node's runtime (``docker run`` or ``podman run``), hardened by the Docker engine's own options
(:func:`manager.backends.docker.workers.hardened_options`, rendered here as a command line),
and records how the container ended before it removes it.

``scancel`` (and SLURM's time limit, a preemption) signals the job's processes, not the
container, which is the runtime's child: the script traps TERM, kills the container, records
its exit and removes it. The worker is killed, not asked to stop (``--sig-proxy=false``: the
runtime's client passes no signal on), so the attempt ends without a result, as a worker
``docker kill`` ends, and the manager's recovery fails it and the protocol retries it: a job
SLURM took away is not a cancelled task (``orchestrator task cancel`` is the protocol's). The record is ``<job dir>/<job name>.exit``, one JSON
object ``{"exit_code": N, "oom_killed": B}``, written by the script as the job's user outside
the container; the agent cannot reach the job directory (the volume is under the worker's
``/runtime``, which only the worker's root runtime may enter).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from ...errors import SpawnFailed
from ..config import ContainerRuntime

NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The job's PATH: jobs are submitted with ``--export=NONE``, so no manager variable (a
credential among them) reaches the job."""
PODMAN_LIMITS = '--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096'
"""Podman as root asks for limits above the node's hard ones and fails without these
("error setting rlimit type 7"; docs/test-clusters.md)."""


def _flags(option: str, values: list[str]) -> list[str]:
    return [part for value in values for part in (option, value)]


def _volumes(volumes: dict[str, dict[str, str]]) -> list[str]:
    return _flags("--volume", [f"{src}:{bind['bind']}:{bind['mode']}" for src, bind in volumes.items()])


def _mapping(option: str) -> Callable[[dict[str, str]], list[str]]:
    return lambda values: _flags(option, [f"{key}={value}" for key, value in values.items()])


RENDER: dict[str, Callable[[Any], list[str]]] = {
    "name": lambda value: ["--name", str(value)],
    "labels": _mapping("--label"),
    "environment": _mapping("--env"),
    "user": lambda value: ["--user", str(value)],
    "cap_drop": lambda values: _flags("--cap-drop", list(values)),
    "cap_add": lambda values: _flags("--cap-add", list(values)),
    "security_opt": lambda values: _flags("--security-opt", list(values)),
    "network_mode": lambda value: ["--network", str(value)],
    "volumes": _volumes,
    "mem_limit": lambda value: ["--memory", str(value)],
    "nano_cpus": lambda value: ["--cpus", f"{value / 1e9:g}"],
    "pids_limit": lambda value: ["--pids-limit", str(value)],
    "detach": lambda value: [],  # the script waits for the container itself
    "init": lambda value: ["--init"] if value else [],
    "read_only": lambda value: ["--read-only"] if value else [],
    "tmpfs": lambda mounts: _flags("--tmpfs", [f"{path}:{opts}" for path, opts in mounts.items()]),
    "log_config": lambda config: [
        "--log-driver", str(config["Type"]),
        *_flags("--log-opt", [f"{k}={v}" for k, v in config.get("Config", {}).items()]),
    ],
}
"""docker-py's ``containers.create`` keywords as ``docker run`` flags; an option with no entry
here is refused, so no hardening option is ever dropped on the way."""


def run_argv(runtime: ContainerRuntime, options: dict[str, Any]) -> list[str]:
    """``options`` (docker-py keywords) as a ``docker run``/``podman run`` command line."""
    unknown = sorted(set(options) - set(RENDER) - {"image", "command"})
    if unknown:
        raise SpawnFailed(
            f"The SLURM engine cannot pass the worker option(s) {', '.join(unknown)} to "
            f"{runtime} run; add them to manager/backends/slurm/script.py RENDER."
        )
    argv = [runtime, "run"]
    for key, value in options.items():
        if key == "log_config" and runtime == "podman":  # podman rotates k8s-file by size only
            size = value.get("Config", {}).get("max-size", "10m")
            argv += ["--log-driver", "k8s-file", "--log-opt", f"max-size={size}"]
        elif key in RENDER:
            argv += RENDER[key](value)
    return [*argv, str(options["image"]), *map(str, options["command"])]


def batch_script(
    runtime: ContainerRuntime, options: dict[str, Any], exit_file: str, docker_host: str | None
) -> str:
    """The job's script: run the container, record its exit, remove it, exit with its code."""
    limits = f" {PODMAN_LIMITS}" if runtime == "podman" else ""
    argv = f"{runtime} run --sig-proxy=false{limits} {shlex.join(run_argv(runtime, options)[2:])}"
    name, record = shlex.quote(str(options["name"])), shlex.quote(exit_file)
    host = f"export DOCKER_HOST={shlex.quote(docker_host)}\n" if docker_host else ""
    return f"""#!/bin/bash
# The orchestrator's worker {options["name"]} (written by manager/backends/slurm/script.py).
export PATH={NODE_PATH}
{host}umask 022
name={name}
record={record}
save_exit() {{
  {runtime} inspect --format '{{{{json .State.ExitCode}}}} {{{{json .State.OOMKilled}}}}' "$name" \\
    2>/dev/null | {{ read -r code oom && printf '{{"exit_code": %s, "oom_killed": %s}}\\n' "$code" "$oom"; }} \\
    >"$record.tmp" && mv -f "$record.tmp" "$record"
  {runtime} rm -f "$name" >/dev/null 2>&1
}}
on_term() {{
  {runtime} kill "$name" >/dev/null 2>&1
  save_exit
  exit 143
}}
trap on_term TERM INT
# A container a killed job left behind (SLURM may end a job without TERM, as on NODE_FAIL);
# the manager has checked that no job of this task runs.
{runtime} rm -f "$name" >/dev/null 2>&1
{argv} &
wait $!
started=$?
save_exit
code=$(sed -n 's/.*"exit_code": \\([0-9-]*\\).*/\\1/p' "$record" 2>/dev/null)
exit "${{code:-$started}}"
"""
