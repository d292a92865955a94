"""The shape of the production code: no function longer than 50 lines, from its ``def`` to its
last line (ruff's C901 holds the complexity to 15). A function over the limit today is named
below, so the list can only shrink: one that gets shorter is to be taken off it, and a new one
over the limit fails."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "orchestration_protocol",
    "orchestration_views",
    "manager",
    "worker",
    "gateway",
    "scripted_model",
    "dashboard",
)
MAX_LINES = 50
OVER_THE_LIMIT: frozenset[str] = frozenset()
"""``path:function`` of the functions over the limit today, each to be split by its owner."""


def _functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.name, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def long_functions() -> dict[str, int]:
    """``path:function`` -> lines, for every production function over the limit."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name, lines in _functions(path):
                if lines > MAX_LINES:
                    found[f"{path.relative_to(ROOT)}:{name}"] = lines
    return found


def test_no_function_is_longer_than_fifty_lines() -> None:
    found = long_functions()
    new = {name: lines for name, lines in found.items() if name not in OVER_THE_LIMIT}
    assert not new, f"over {MAX_LINES} lines (split them): {new}"


def test_the_list_of_long_functions_only_shrinks() -> None:
    shrunk = OVER_THE_LIMIT - set(long_functions())
    assert not shrunk, f"no longer over the limit (take them off OVER_THE_LIMIT): {sorted(shrunk)}"


def _imported(package: str) -> set[str]:
    """The top-level packages that the modules of ``package`` import (relative imports left out)."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_the_read_model_stands_below_the_manager_and_the_dashboard() -> None:
    """orchestration_views imports only the protocol; the dashboard imports no manager module."""
    project = set(PACKAGES)
    assert _imported("orchestration_views") & project == {"orchestration_protocol"}
    assert "manager" not in _imported("dashboard")
