"""Which merged branch breaks the integration branch's check (issue 18, "the merge").

The manager merges the branches that passed their own checks, in order; when the integration
branch's check fails, :func:`attribute_failure` re-checks the merge with one branch left out at
a time. A single branch whose absence makes the check pass is the culprit and gets the repair
round with the integration failure as its input; two such branches are a pair that breaks only
together (the later one in the merge order gets the round, told about the other); anything
else (none, or more than two) is a combination that only a ``fix-integration`` task on the
integration branch can repair. ``passes`` is the caller's: merge those branches onto the base in
that order and run the check (a task of kind ``check``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from .docstrings import describe_fields


class Blame(StrEnum):
    """What the re-checks found."""

    NONE = "none"
    """The whole merge passes: nothing to attribute."""
    BRANCH = "branch"
    """One branch: without it the check passes."""
    PAIR = "pair"
    """Two branches that break only together."""
    COMBINATION = "combination"
    """No single branch or pair explains it: a fix-integration task."""


class Attribution(BaseModel):
    """The outcome of the re-checks."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True)

    blame: Blame
    """none, branch, pair or combination."""
    branches: list[str] = Field(default_factory=list)
    """The branches blamed (one for ``branch``, two in merge order for ``pair``)."""
    repair: str | None = None
    """The branch whose task gets the repair round (None: a fix-integration task, or nothing)."""
    checks_run: int = 0
    """How many merges were checked to find it."""


def attribute_failure(
    branches: Sequence[str], passes: Callable[[list[str]], bool], *, known_failing: bool = False
) -> Attribution:
    """Leave each branch out in turn (``len(branches)`` checks, plus one for the whole merge
    unless ``known_failing``) and say which branch or pair breaks the check."""
    order = list(branches)
    runs = 0
    if not known_failing:
        runs += 1
        if passes(order):
            return Attribution(blame=Blame.NONE, checks_run=runs)
    freeing = []
    for branch in order:
        runs += 1
        if passes([b for b in order if b != branch]):
            freeing.append(branch)
    if len(freeing) == 1:
        return Attribution(blame=Blame.BRANCH, branches=freeing, repair=freeing[0], checks_run=runs)
    if len(freeing) == 2:
        return Attribution(blame=Blame.PAIR, branches=freeing, repair=freeing[1], checks_run=runs)
    return Attribution(blame=Blame.COMBINATION, branches=freeing or order, checks_run=runs)
