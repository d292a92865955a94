"""The CLI's commands, one module per kind of work; importing this package registers them (in
the order ``--help`` lists them)."""

# ruff: noqa: I001 - the import order is the order of the commands in --help
from . import work, check, plan, watching, housekeeping, tasks, pool, service
from .common import app
from .work import spawn_worker_app

__all__ = [
    "app", "check", "housekeeping", "plan", "pool", "service", "spawn_worker_app", "tasks", "watching",
    "work",
]  # fmt: skip
