"""Where each protocol file lives under the orchestration root, and which ids are allowed."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidTaskId

TASK_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_ROOT = Path("/orchestration")
ROOT_ENV = "ORCHESTRATION_DIR"
JSON_SUFFIX = ".json"


def validate_task_id(task_id: str) -> str:
    """Return ``task_id`` unchanged, or raise :class:`InvalidTaskId` naming the rule it breaks."""
    if not isinstance(task_id, str) or not TASK_ID_PATTERN.fullmatch(task_id):
        raise InvalidTaskId(
            f"Task id {task_id!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return task_id


def is_valid_task_id(task_id: str) -> bool:
    """True when ``task_id`` may name a task."""
    return bool(TASK_ID_PATTERN.fullmatch(task_id))


def default_root() -> Path:
    """The orchestration root: ``$ORCHESTRATION_DIR``, else ``/orchestration``."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


@dataclass(frozen=True)
class Layout:
    """The directory layout of one orchestration root (see DESIGN.md, "The protocol")."""

    root: Path

    @property
    def tasks_dir(self) -> Path:
        return self.root / "tasks"

    @property
    def status_dir(self) -> Path:
        return self.root / "status"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def control_dir(self) -> Path:
        return self.root / "control"

    @property
    def claims_dir(self) -> Path:
        return self.root / "claims"

    def directories(self) -> tuple[Path, ...]:
        """Every directory the protocol uses."""
        return (
            self.tasks_dir,
            self.status_dir,
            self.results_dir,
            self.logs_dir,
            self.control_dir,
            self.claims_dir,
        )

    def ensure(self) -> Layout:
        """Create the protocol's directories if missing; return self."""
        for directory in self.directories():
            directory.mkdir(parents=True, exist_ok=True)
        return self

    def task_file(self, task_id: str) -> Path:
        return self.tasks_dir / f"{validate_task_id(task_id)}{JSON_SUFFIX}"

    def status_file(self, task_id: str) -> Path:
        return self.status_dir / f"{validate_task_id(task_id)}{JSON_SUFFIX}"

    def result_file(self, task_id: str) -> Path:
        return self.results_dir / f"{validate_task_id(task_id)}{JSON_SUFFIX}"

    def artifacts_dir(self, task_id: str) -> Path:
        """``results/<id>/``: changes.patch, changes.bundle, transcript.jsonl, old attempts."""
        return self.results_dir / validate_task_id(task_id)

    def archived_result_file(self, task_id: str, attempt: int) -> Path:
        """Where the result of an earlier attempt is kept once a retry starts."""
        return self.artifacts_dir(task_id) / "attempts" / f"{attempt}{JSON_SUFFIX}"

    def log_file(self, task_id: str) -> Path:
        return self.logs_dir / f"{validate_task_id(task_id)}.log"

    def cancel_file(self, task_id: str) -> Path:
        return self.control_dir / f"{validate_task_id(task_id)}.cancel"

    def claim_dir(self, task_id: str) -> Path:
        """``claims/<id>/``: one file per attempt, ``<attempt>.json``, created exclusively."""
        return self.claims_dir / validate_task_id(task_id)

    def claim_file(self, task_id: str, attempt: int) -> Path:
        return self.claim_dir(task_id) / f"{attempt}{JSON_SUFFIX}"


def task_id_from_filename(name: str, suffix: str = JSON_SUFFIX) -> str | None:
    """The id in ``<id><suffix>``, or None when the name is not of that form."""
    if not name.endswith(suffix):
        return None
    stem = name[: -len(suffix)]
    return stem if is_valid_task_id(stem) else None


def is_hidden(name: str) -> bool:
    """Temporary and hidden files (``.name``) are never protocol files and never reported."""
    return name.startswith(".")
