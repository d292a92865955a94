"""Errors of the scripted model endpoint, each named by the condition it reports.

Every error subclasses :class:`ScriptedModelError` and a builtin; ``str(error)`` is one sentence
that names the thing and the fix.
"""

from __future__ import annotations


class ScriptedModelError(Exception):
    """Base of every error raised by ``scripted_model``."""


class ScenarioFileError(ScriptedModelError, ValueError):
    """A scenario file cannot be read, is not JSON, or does not fit the scenario format."""

