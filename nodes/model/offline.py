"""The generic part of an offline planner: a chat model that is code, not an LLM.

A domain brings its own rule-based planner (``DomainPlugin.offline_planner``) as a subclass of
:class:`OfflinePlanner`: it implements :meth:`OfflinePlanner.plan`, which reads the whole
conversation (system prompt, customer turns, its earlier tool calls and the JSON results) and
returns one message. The base records the bound tool names, keeps no state between calls (a
graph resumed in another process carries on where it stopped) and is labelled as no LLM by
:func:`nodes.model.factory.describe_model`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.caches import BaseCache
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import PrivateAttr

__all__ = ["MAX_TEXT_CHARS", "OFFLINE_LLM_TYPE", "OfflinePlanner", "tool_names"]

OFFLINE_LLM_TYPE = "airlock-offline-planner"
MAX_TEXT_CHARS = 4000


def tool_names(tools: Sequence[Any]) -> list[str]:
    """Return the names of tools given in any form ``bind_tools`` accepts."""
    names: list[str] = []
    for tool in tools:
        name: Any = None
        if isinstance(tool, BaseTool):
            name = tool.name
        elif isinstance(tool, Mapping):
            function = tool.get("function")
            name = function.get("name") if isinstance(function, Mapping) else tool.get("name")
            name = name or tool.get("title")
        else:
            name = getattr(tool, "name", None) or getattr(tool, "__name__", None)
        if isinstance(name, str) and name:
            names.append(name)
    return names


class OfflinePlanner(BaseChatModel):
    """Base of a domain's rule-based stand-in for an LLM; subclasses implement :meth:`plan`.

    It emits what :meth:`plan` returns, with ``response_metadata`` naming the planner. It is
    stateless: the same messages (and bound tools) always give the same reply, in any process.
    """

    # Never use a global LLM cache: answers depend on the bound tools too.
    cache: BaseCache | bool | None = False

    _bound: frozenset[str] = PrivateAttr(default_factory=frozenset)

    @property
    def _llm_type(self) -> str:
        return OFFLINE_LLM_TYPE

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"planner": OFFLINE_LLM_TYPE, "class": type(self).__qualname__}

    @property
    def bound_tools(self) -> list[str]:
        """The tool names this planner was bound with (empty: assume every tool of its domain)."""
        return sorted(self._bound)

    def bind_tools(
        self,
        tools: Sequence[builtins.dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Record the tool names and return the planner itself (it always picks its own tool).

        Args:
            tools: The tools the agent exposes.
            tool_choice: Ignored.
            **kwargs: Ignored (e.g. ``parallel_tool_calls``; a planner makes one call a turn).

        Returns:
            This planner.
        """
        self._bound = frozenset(tool_names(tools))
        return self

    def plan(self, messages: Sequence[BaseMessage]) -> AIMessage:
        """Return the next message for ``messages`` (no callbacks; used by ``_generate``).

        Args:
            messages: The whole conversation so far.

        Returns:
            An ``AIMessage`` with tool calls and empty content, or a text answer.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement plan()")

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = self.plan(messages)
        message.response_metadata = {"model_name": OFFLINE_LLM_TYPE}
        return ChatResult(generations=[ChatGeneration(message=message)])
