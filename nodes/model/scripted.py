"""A chat model that replays a fixed script, for tests and adversarial evals.

Each script item is the model's answer to one call: an ``AIMessage`` (possibly with tool calls)
or a callable ``(messages) -> AIMessage`` that can look at the conversation (e.g. to forge an
argument from a tool result). When the script runs out the model raises
:class:`ScriptExhaustedError` instead of inventing an answer, so a graph that calls the model more
often than a test expects fails loudly.

A script can also be written as plain JSON-compatible data (:meth:`ScriptedChatModel.from_spec`),
so a test can rebuild the same model in a new process to resume a persisted graph. Tool-call ids
are always deterministic: the ids given in the script, or ``call_<item>_<k>`` when omitted.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from langchain_core.caches import BaseCache
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from graph.errors import AirlockError
from nodes.model.offline import tool_names

__all__ = [
    "SCRIPTED_LLM_TYPE",
    "ScriptExhaustedError",
    "ScriptItem",
    "ScriptedChatModel",
]

SCRIPTED_LLM_TYPE = "airlock-scripted"

ScriptItem = AIMessage | Callable[[list[BaseMessage]], AIMessage]
Cursor = Literal["calls", "conversation"]


class ScriptExhaustedError(AirlockError, RuntimeError):
    """The model was called more times than its script has responses.

    Attributes:
        calls_made: How many times the model has been called, this call included.
        script_length: How many responses the script holds.
        last_message: The last input message of the failing call (None if there was none).
    """

    def __init__(
        self, *, calls_made: int, script_length: int, last_message: BaseMessage | None
    ) -> None:
        self.calls_made = calls_made
        self.script_length = script_length
        self.last_message = last_message
        if last_message is None:
            last = "no input messages"
        else:
            last = f"{last_message.type}: {str(last_message.content)[:300]!r}"
        super().__init__(
            f"ScriptedChatModel script exhausted: call #{calls_made} but the script has only "
            f"{script_length} response(s). Last input message: {last}"
        )


def _fill_ids(message: AIMessage, item: int) -> AIMessage:
    """Return a copy of ``message`` whose tool calls all carry a deterministic id."""
    calls = []
    for k, call in enumerate(message.tool_calls):
        calls.append({**call, "id": call.get("id") or f"call_{item}_{k}"})
    return message.model_copy(update={"tool_calls": calls}, deep=True)


def _message_from_spec(spec: Any, item: int) -> AIMessage:
    """Build one scripted ``AIMessage`` from a string or a JSON-compatible mapping."""
    if isinstance(spec, str):
        return AIMessage(content=spec)
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"script item {item}: expected a str, a mapping, an AIMessage or a callable, "
            f"got {type(spec).__name__}"
        )
    unknown = set(spec) - {"content", "tool_calls", "id", "name"}
    if unknown:
        raise ValueError(f"script item {item}: unknown keys {sorted(unknown)}")
    calls = []
    for k, call in enumerate(spec.get("tool_calls") or []):
        if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
            raise ValueError(f"script item {item}, tool call {k}: needs a string 'name'")
        args = call.get("args", {})
        if not isinstance(args, Mapping):
            raise ValueError(f"script item {item}, tool call {k}: 'args' must be a mapping")
        call_id = call.get("id") or f"call_{item}_{k}"
        if not isinstance(call_id, str):
            raise ValueError(f"script item {item}, tool call {k}: 'id' must be a string")
        calls.append({"name": call["name"], "args": dict(args), "id": call_id})
    extra: dict[str, Any] = {}
    if spec.get("id") is not None:
        extra["id"] = str(spec["id"])
    if spec.get("name") is not None:
        extra["name"] = str(spec["name"])
    return AIMessage(content=spec.get("content", ""), tool_calls=calls, **extra)


class ScriptedChatModel(BaseChatModel):
    """Replay a script of responses, one per model call.

    Attributes:
        script: The responses; items are ``AIMessage`` or ``(messages) -> AIMessage``.
            Strings and ``{"content", "tool_calls": [{"name", "args", "id"}]}`` mappings are
            accepted too and converted to ``AIMessage``.
        cursor: ``"calls"`` (default) plays item ``start + <calls made>``; ``"conversation"``
            plays item ``start + <AIMessages already in the input>``, which needs no memory at
            all, so a graph resumed in another process gets the right item.
        start: Index of the first item to play (e.g. the number of calls made before a restart).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: list[Any] = Field(default_factory=list)
    # A global LLM cache would answer a repeated prompt without consuming the script.
    cache: BaseCache | bool | None = False
    cursor: Cursor = "calls"
    start: int = Field(default=0, ge=0)

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)
    _bound_tools: list[str] = PrivateAttr(default_factory=list)

    @field_validator("script", mode="before")
    @classmethod
    def _normalise_script(cls, value: Any) -> list[ScriptItem]:
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise TypeError("script must be a list of responses")
        items: list[ScriptItem] = []
        for i, item in enumerate(value):
            if isinstance(item, AIMessage):
                items.append(_fill_ids(item, i))
            elif callable(item):
                items.append(item)
            else:
                items.append(_message_from_spec(item, i))
        return items

    @classmethod
    def from_spec(
        cls,
        spec: Sequence[str | Mapping[str, Any]],
        *,
        start: int = 0,
        cursor: Cursor = "calls",
    ) -> ScriptedChatModel:
        """Build a model from plain data (e.g. ``json.loads`` of a file shared with a subprocess).

        Args:
            spec: One item per call: a string (a text answer) or a mapping with ``content`` and
                ``tool_calls`` (each ``{"name", "args", "id"}``).
            start: Index of the first item to play.
            cursor: How the next item is chosen (see the class docstring).

        Returns:
            The scripted model.
        """
        return cls(script=list(spec), start=start, cursor=cursor)

    def to_spec(self) -> list[dict[str, Any]]:
        """Return the script as plain data that :meth:`from_spec` accepts.

        Returns:
            One mapping per item.

        Raises:
            TypeError: If the script holds a callable (code cannot be serialised).
        """
        spec: list[dict[str, Any]] = []
        for i, item in enumerate(self.script):
            if not isinstance(item, AIMessage):
                raise TypeError(f"script item {i} is a callable and cannot be serialised")
            spec.append(
                {
                    "content": item.content,
                    "tool_calls": [
                        {"name": c["name"], "args": c["args"], "id": c["id"]}
                        for c in item.tool_calls
                    ],
                }
            )
        return spec

    @property
    def _llm_type(self) -> str:
        return SCRIPTED_LLM_TYPE

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"script_length": len(self.script), "cursor": self.cursor, "start": self.start}

    @property
    def calls(self) -> list[list[BaseMessage]]:
        """Return the input messages of every call so far, oldest first (a copy)."""
        with self._lock:
            return [list(c) for c in self._calls]

    @property
    def call_count(self) -> int:
        """Return how many times the model has been called."""
        with self._lock:
            return len(self._calls)

    @property
    def bound_tools(self) -> list[str]:
        """Return the names of the tools of the last ``bind_tools`` call."""
        with self._lock:
            return list(self._bound_tools)

    @property
    def remaining(self) -> int:
        """Return how many responses are left (``"calls"`` cursor)."""
        with self._lock:
            return max(0, len(self.script) - self.start - len(self._calls))

    def bind_tools(
        self,
        tools: Sequence[builtins.dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Record the tool names and return the model itself (the script decides the calls).

        Args:
            tools: The tools the agent exposes.
            tool_choice: Ignored.
            **kwargs: Ignored.

        Returns:
            This model.
        """
        names = tool_names(tools)
        with self._lock:
            self._bound_tools = names
        return self

    def reset(self) -> None:
        """Forget the recorded calls so the script plays again from ``start``."""
        with self._lock:
            self._calls.clear()

    def _next(self, messages: list[BaseMessage]) -> tuple[int, int]:
        """Record the call and return (index of the item to play, number of calls made)."""
        with self._lock:
            self._calls.append(list(messages))
            made = len(self._calls)
            if self.cursor == "conversation":
                index = self.start + sum(isinstance(m, AIMessage) for m in messages)
            else:
                index = self.start + made - 1
            return index, made

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        index, made = self._next(messages)
        if index >= len(self.script):
            raise ScriptExhaustedError(
                calls_made=made,
                script_length=len(self.script),
                last_message=messages[-1] if messages else None,
            )
        item = self.script[index]
        if isinstance(item, AIMessage):
            message = item.model_copy(deep=True)
        else:
            produced = item(list(messages))
            if isinstance(produced, str):
                produced = AIMessage(content=produced)
            if not isinstance(produced, AIMessage):
                raise TypeError(
                    f"script item {index} returned {type(produced).__name__}, not an AIMessage"
                )
            message = _fill_ids(produced, index)
        return ChatResult(generations=[ChatGeneration(message=message)])
