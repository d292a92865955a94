"""The local backend's services: the scripted model and the gateway as processes on this host
(loopback, and the gateway's Unix sockets in the root), each recorded under the root's
``.workers`` so later commands find and reuse them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestration_protocol import Layout

from ...errors import SpawnFailed
from ...polling import poll_until
from ..base import Services
from ..config import LocalConfig
from ..running import Kind, RunningThing
from ..services import (
    READY_TIMEOUT_S,
    SIMULATED_API_KEY,
    GatewaySpec,
    Simulation,
    wait_until_answering,
)
from .processes import RECORDS_DIR, process_start_ticks, start_detached

IDLE_STOP_ENV = "GATEWAY_IDLE_STOP_S"


def _read_record(path: Path) -> dict[str, Any] | None:
    """A service's record, while the process it names still runs."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or process_start_ticks(record["pid"]) != record.get("start_ticks"):
        return None
    return record


def _stop(path: Path) -> bool:
    record = _read_record(path)
    if record is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record["pid"], signal.SIGTERM)
    poll_until(lambda: process_start_ticks(record["pid"]) is None, timeout_s=5)
    return True


# --- the scripted model ---------------------------------------------------------------------


def _model_record(settings: LocalConfig) -> Path:
    return settings.root / RECORDS_DIR / "scripted-model.json"


def start_scripted_model(settings: LocalConfig) -> Simulation:
    """The scripted model on loopback, started unless it runs."""
    record = _read_record(_model_record(settings)) or _spawn_model(settings)
    return Simulation(upstream=record["url"], credentials={"ANTHROPIC_API_KEY": SIMULATED_API_KEY})


def _spawn_model(settings: LocalConfig) -> dict[str, Any]:
    records = settings.root / RECORDS_DIR
    records.mkdir(parents=True, exist_ok=True)
    port_file = records / "scripted-model.port"
    port_file.unlink(missing_ok=True)
    server = [
        sys.executable, "-m", "scripted_model.server", "--host", "127.0.0.1",
        "--require-key", SIMULATED_API_KEY,
    ]  # fmt: skip
    pid = start_detached(
        [*server, "--port", "0", "--port-file", str(port_file), "--quiet"],
        output=records / "scripted-model.out",
    )
    poll_until(
        lambda: port_file.exists() or process_start_ticks(pid) is None, timeout_s=READY_TIMEOUT_S
    )
    if not port_file.exists():
        raise SpawnFailed(f"The scripted model did not start; see {records / 'scripted-model.out'}.")
    record = {
        "pid": pid,
        "start_ticks": process_start_ticks(pid),
        "url": f"http://127.0.0.1:{int(port_file.read_text())}",
    }
    _model_record(settings).write_text(json.dumps(record))
    return record


def stop_scripted_model(settings: LocalConfig) -> bool:
    return _stop(_model_record(settings))


# --- the gateway ----------------------------------------------------------------------------


def _gateway_record(settings: LocalConfig) -> Path:
    return settings.root / RECORDS_DIR / "gateway.json"


def start_gateway(settings: LocalConfig, spec: GatewaySpec) -> None:
    """The gateway as a process with the credentials in a private directory, replaced when
    ``spec`` changed."""
    fingerprint = spec.fingerprint()
    record = _read_record(_gateway_record(settings))
    alive = record is not None and process_start_ticks(int(record.get("pid", 0))) == record.get(
        "start_ticks"
    )  # a gateway that stopped itself when idle (gateway.idle) is started again
    if record is not None and alive and record.get("config") == fingerprint:
        wait_until_answering(Layout(settings.root))
        return
    if record is not None:
        stop_gateway(settings)
    records = settings.root / RECORDS_DIR
    records.mkdir(parents=True, exist_ok=True)
    secrets_dir = Path(tempfile.mkdtemp(prefix="orchestrator-gateway-secrets-"))
    for name, value in spec.credentials.items():
        (secrets_dir / name).write_text(value)
        (secrets_dir / name).chmod(0o400)
    # the environment handed to a child process: this one's, less the credentials
    env = {key: value for key, value in os.environ.items() if key not in spec.credentials}
    env.update(spec.env)
    env["ORCHESTRATOR_SECRETS_DIR"] = str(secrets_dir)
    command = [_gateway_command(), "--root", str(settings.root), "--upstream", spec.upstream]
    pid = start_detached(command, output=records / "gateway.out", env=env, secrets_dir=secrets_dir)
    _gateway_record(settings).write_text(
        json.dumps({
            "pid": pid, "start_ticks": process_start_ticks(pid), "config": fingerprint,
            "idle_stop_s": env.get(IDLE_STOP_ENV),
        })
    )
    wait_until_answering(
        Layout(settings.root),
        lambda: None if process_start_ticks(pid) else f"it exited; see {records / 'gateway.out'}",
    )


def stop_gateway(settings: LocalConfig) -> bool:
    return _stop(_gateway_record(settings))


def running_services(settings: LocalConfig) -> list[RunningThing]:
    """The root's gateway and scripted model while their processes run (started when their
    records were written)."""
    found = []
    for kind, path in ((Kind.GATEWAY, _gateway_record(settings)),
                       (Kind.SCRIPTED_MODEL, _model_record(settings))):
        record = _read_record(path)
        if record is None:
            continue
        with contextlib.suppress(OSError):
            started = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            idle = record.get("idle_stop_s")
            found.append(RunningThing(
                kind=kind, name=f"{kind.value} (pid {record['pid']})", started_at=started,
                idle_stop_s=float(idle) if kind is Kind.GATEWAY and idle else None,
            ))
    return found


def _gateway_command() -> str:
    beside = Path(sys.executable).parent / "orchestrator-gateway"
    return str(beside) if beside.exists() else (shutil.which("orchestrator-gateway") or str(beside))


class LocalServices(Services):
    """The scripted model and the gateway as processes on this host, recorded in the root."""

    def __init__(self, config: LocalConfig) -> None:
        self.config = config

    def start_scripted_model(self) -> Simulation:
        return start_scripted_model(self.config)

    def stop_scripted_model(self) -> bool:
        return stop_scripted_model(self.config)

    def start_gateway(self, spec: GatewaySpec) -> None:
        start_gateway(self.config, spec)

    def stop_gateway(self) -> bool:
        return stop_gateway(self.config)
