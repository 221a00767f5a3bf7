"""Chat models for the agent: OpenAI-compatible LLMs, the offline planner, scripted test models.

- :func:`make_chat_model` / :class:`ModelSettings`: pick and build the model from settings.
- :class:`OfflinePlanner`: the rule-based planner used without an LLM (demo and tests).
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
from nodes.model.offline import (
    HELP_MESSAGE,
    OFFLINE_LLM_TYPE,
    POLICY_SUMMARIES,
    TRANSFER_MESSAGE,
    WRITE_TOOLS,
    OfflinePlanner,
    tool_names,
)
from nodes.model.scripted import ScriptedChatModel, ScriptExhaustedError, ScriptItem

__all__ = [
    "DEFAULT_MODEL",
    "HELP_MESSAGE",
    "OFFLINE_LABEL",
    "OFFLINE_LLM_TYPE",
    "POLICY_SUMMARIES",
    "TRANSFER_MESSAGE",
    "WRITE_TOOLS",
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
