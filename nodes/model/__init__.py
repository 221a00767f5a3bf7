"""Chat models for the agent: OpenAI-compatible LLMs, the offline planner, scripted test models.

- :func:`make_chat_model` / :class:`ModelSettings`: pick and build the model from settings.
- :class:`OfflinePlanner`: the base of a domain's rule-based planner, used without an LLM.
- :class:`ScriptedChatModel`: replays a script of responses (tests, adversarial evals).
"""

from nodes.model.factory import (
    DEFAULT_MODEL,
    OFFLINE_LABEL,
    ModelConfigError,
    ModelSettings,
    Provider,
    describe_model,
    make_chat_model,
)
from nodes.model.offline import OFFLINE_LLM_TYPE, OfflinePlanner, tool_names
from nodes.model.scripted import ScriptedChatModel, ScriptExhaustedError, ScriptItem

__all__ = [
    "DEFAULT_MODEL",
    "OFFLINE_LABEL",
    "OFFLINE_LLM_TYPE",
    "ModelConfigError",
    "ModelSettings",
    "OfflinePlanner",
    "Provider",
    "ScriptExhaustedError",
    "ScriptItem",
    "ScriptedChatModel",
    "describe_model",
    "make_chat_model",
    "tool_names",
]
