"""Scenarios: what the scripted model answers, keyed by the prompt.

A scenario file is JSON::

    {"scenarios": [
      {"name": "sleep",
       "match": "\\\\bsleep (?P<seconds>\\\\d+(?:\\\\.\\\\d+)?)\\\\b", "regex": true,
       "turns": [{"tool_uses": [{"name": "Bash", "input": {"command": "sleep {seconds}"}}]}],
       "final_text": "Slept {seconds} s."}
    ]}

A conversation's *turn index* is the number of assistant replies already given since the latest
prompt; turn ``i < len(turns)`` answers ``turns[i]`` (its tool calls, stop reason ``tool_use``),
turn ``len(turns)`` and later answer ``final_text`` (stop reason ``end_turn``).

Strings in texts and tool inputs may hold placeholders, filled from the request: ``{cwd}`` (the
working directory Claude Code states in its system prompt), ``{prompt}``, ``{prompt_hash}``,
``{session_id}``, ``{last_tool_result}``, ``{turn}``, ``{model}``, and the named groups of a
regex ``match``. Unknown ``{names}`` are left as they are, so code in tool inputs is safe.

Choice: scenarios with a non-empty ``match`` are tried first, in order; then catch-alls
(``match: ""``), in order; then :data:`NO_SCENARIO`, whose final text names the prompt.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestration_protocol.docstrings import describe_fields

from .exceptions import ScenarioFileError

SCENARIOS_ENV = "SCRIPTED_MODEL_SCENARIOS"
"""Environment variable: scenario files or directories, separated by ``os.pathsep``."""

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ScenarioModel(BaseModel):
    """Common settings: unknown fields are errors; field docstrings become descriptions."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=describe_fields, defer_build=True, frozen=True)


class ToolUse(ScenarioModel):
    """One tool call the model makes."""

    name: str = Field(min_length=1)
    """The tool's name as Claude Code offers it: ``Write``, ``Edit``, ``Bash``, ``Read``, ..."""

    input: dict[str, Any] = Field(default_factory=dict)
    """The tool's input; its strings may hold placeholders (Write and Edit need ``{cwd}/...``)."""


class Turn(ScenarioModel):
    """One assistant reply that calls tools; the CLI answers with the tools' results."""

    text: str = ""
    """Text said before the tool calls (may be empty)."""

    tool_uses: list[ToolUse] = Field(min_length=1)
    """The tool calls of this reply, in order (Claude Code may run them in parallel)."""

    delay_s: float = Field(default=0.0, ge=0)
    """Seconds to wait before answering, as a slow model would."""


class ApiError(ScenarioModel):
    """An API failure to answer instead of a reply, in Anthropic's error JSON."""

    status: int = Field(default=500, ge=400, le=599)
    """HTTP status: 400 invalid_request_error, 401 authentication_error, 429, 500, 529, ..."""

    type: str = "api_error"
    """Anthropic's ``error.type``, e.g. ``api_error``, ``authentication_error``."""

    message: str = "Simulated API error (scripted model)"
    """Anthropic's ``error.message``; placeholders are filled."""

    at_turn: int = Field(default=0, ge=0)
    """The turn index that fails; earlier turns answer normally."""

    retryable: bool = False
    """Whether the client may retry (``x-should-retry``); ``false`` makes the CLI fail at once."""


class Usage(ScenarioModel):
    """Token counts reported with every reply of the scenario."""

    input_tokens: int = Field(default=100, ge=0)
    """Uncached input tokens."""

    output_tokens: int = Field(default=50, ge=0)
    """Output tokens."""

    cache_creation_input_tokens: int = Field(default=0, ge=0)
    """Input tokens written to the prompt cache."""

    cache_read_input_tokens: int = Field(default=0, ge=0)
    """Input tokens read from the prompt cache."""


class Scenario(ScenarioModel):
    """A scripted conversation for the prompts that ``match`` selects."""

    name: str = Field(min_length=1)
    """A short name, shown in the server's log and its request records."""

    match: str = ""
    """Substring (case-insensitive) of the prompt, or a regex if ``regex``; empty matches all."""

    regex: bool = False
    """Treat ``match`` as a Python regex (``re.search``); its named groups become placeholders."""

    turns: list[Turn] = Field(default_factory=list)
    """The replies that call tools, in order; the reply after them is the final text."""

    final_text: str = "Done."
    """The last reply's text (stop reason ``end_turn``); the CLI reports it as the result."""

    final_delay_s: float = Field(default=0.0, ge=0)
    """Seconds to wait before giving the final text."""

    error: ApiError | None = None
    """Fail with this API error (at ``error.at_turn``) instead of answering."""

    usage: Usage = Field(default_factory=Usage)
    """Token counts reported with each reply; the CLI turns them into ``total_cost_usd``."""

    program: str | None = None
    """A built-in program that computes the replies from the conversation instead of ``turns``
    and ``final_text``: ``plan``, ``work`` or ``manage`` (see ``scripted_model.programs``)."""

    structured_output: dict[str, Any] | None = None
    """What to hand to Claude Code's StructuredOutput tool (``--json-schema``) after the turns;
    without it, a minimal instance of the requested schema."""

    @model_validator(mode="after")
    def _check_regex(self) -> Scenario:
        from .programs import PROGRAMS

        if self.program is not None and self.program not in PROGRAMS:
            raise ValueError(f"program must be one of {', '.join(PROGRAMS)}")
        if self.regex:
            try:
                re.compile(self.match)
            except re.error as error:
                raise ValueError(f"match is not a valid regex ({error})") from error
        return self

    @property
    def is_catch_all(self) -> bool:
        """True when the scenario matches every prompt."""
        return self.match == ""

    def match_prompt(self, prompt: str) -> dict[str, str] | None:
        """The placeholders the match yields (named groups), or None when it does not match."""
        if self.regex:
            found = re.search(self.match, prompt, re.DOTALL)
            if found is None:
                return None
            return {k: v for k, v in found.groupdict().items() if v is not None}
        return {} if self.match.casefold() in prompt.casefold() else None


class ScenarioFile(ScenarioModel):
    """The content of one scenario file."""

    description: str = ""
    """What the file's scenarios are for (not used by the server)."""

    scenarios: list[Scenario]
    """The scenarios, tried in this order."""


NO_SCENARIO = Scenario(
    name="no-scenario",
    final_text="The scripted model has no scenario for the prompt: {prompt}",
)
"""Answered when no scenario (not even a catch-all) matches."""


class ScenarioBook:
    """An ordered set of scenarios and the rule that picks one for a prompt."""

    def __init__(self, scenarios: Iterable[Scenario] = ()) -> None:
        self.scenarios: list[Scenario] = list(scenarios)
        """All scenarios, in the order they were given."""

    def select(self, prompt: str) -> tuple[Scenario, dict[str, str]]:
        """The scenario for ``prompt`` and the placeholders its match yields."""
        specific = [s for s in self.scenarios if not s.is_catch_all]
        catch_alls = [s for s in self.scenarios if s.is_catch_all]
        for scenario in [*specific, *catch_alls]:
            groups = scenario.match_prompt(prompt)
            if groups is not None:
                return scenario, groups
        return NO_SCENARIO, {}

    def names(self) -> list[str]:
        """The scenarios' names, in order."""
        return [s.name for s in self.scenarios]


def fill_placeholders(value: Any, values: Mapping[str, str]) -> Any:
    """``value`` with ``{name}`` replaced in every string (recursively) for names in ``values``."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), value)
    if isinstance(value, list):
        return [fill_placeholders(item, values) for item in value]
    if isinstance(value, dict):
        return {key: fill_placeholders(item, values) for key, item in value.items()}
    return value


def read_scenario_file(path: Path) -> list[Scenario]:
    """The scenarios of one file; :class:`ScenarioFileError` names the file and the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioFileError(f"cannot read scenario file {path}: {error.strerror}") from error
    try:
        return ScenarioFile.model_validate(json.loads(text)).scenarios
    except json.JSONDecodeError as error:
        raise ScenarioFileError(f"scenario file {path} is not valid JSON: {error}") from error
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors()
        )
        raise ScenarioFileError(f"scenario file {path} is not valid: {problems}") from error


def _files_in(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(path.glob("*.json"))
    return [path]


def builtin_scenario_files() -> list[Path]:
    """The scenario files shipped in the package (``scripted_model/scenarios/*.json``)."""
    folder = resources.files("scripted_model") / "scenarios"
    return sorted(Path(str(folder)).glob("*.json"))


def load_scenarios(
    paths: Sequence[Path] = (), *, use_env: bool = True, builtin: bool = True
) -> ScenarioBook:
    """Scenarios from ``paths`` (files or directories of ``*.json``), then from the directories
    or files in ``$SCRIPTED_MODEL_SCENARIOS``, then the built-in ones; earlier ones win."""
    sources = list(paths)
    if use_env and os.environ.get(SCENARIOS_ENV):
        sources += [Path(p) for p in os.environ[SCENARIOS_ENV].split(os.pathsep) if p]
    files = [f for source in sources for f in _files_in(source)]
    if builtin:
        files += builtin_scenario_files()
    return ScenarioBook(s for f in files for s in read_scenario_file(f))
