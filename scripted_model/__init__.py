"""The scripted model endpoint: a small HTTP server speaking the part of Anthropic's Messages
API that Claude Code uses, answering from scenarios keyed by the prompt, so the real ``claude``
binary runs end to end (edits files, runs commands, reports a result) without a model service.

See ``scripted_model/README.md`` for the scenario format, the CLI and what Claude Code sends.
"""

from typing import TYPE_CHECKING, Any

from worker.claude_binary import SDK_PIN, find_claude
from worker.errors import ClaudeNotFound

from .claude_binary import TEST_API_KEY, claude_env, prepare_claude_home
from .conversation import Conversation, read_conversation
from .exceptions import ScenarioFileError, ScriptedModelError
from .scenario import (
    NO_SCENARIO,
    SCENARIOS_ENV,
    ApiError,
    Scenario,
    ScenarioBook,
    ScenarioFile,
    ToolUse,
    Turn,
    Usage,
    load_scenarios,
    read_scenario_file,
)

if TYPE_CHECKING:
    from .server import RecordedRequest, ScriptedModelServer


def __getattr__(name: str) -> Any:
    # The server module loads lazily, so `python -m scripted_model.server` runs it only once.
    if name in ("RecordedRequest", "ScriptedModelServer"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'scripted_model' has no attribute {name!r}")


__all__ = [
    "NO_SCENARIO",
    "SCENARIOS_ENV",
    "SDK_PIN",
    "TEST_API_KEY",
    "ApiError",
    "ClaudeNotFound",
    "Conversation",
    "RecordedRequest",
    "Scenario",
    "ScenarioBook",
    "ScenarioFile",
    "ScenarioFileError",
    "ScriptedModelError",
    "ScriptedModelServer",
    "ToolUse",
    "Turn",
    "Usage",
    "claude_env",
    "find_claude",
    "load_scenarios",
    "prepare_claude_home",
    "read_conversation",
    "read_scenario_file",
]
