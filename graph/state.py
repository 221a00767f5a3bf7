"""Graph state: messages plus the guard decisions the UI shows."""

from __future__ import annotations

import operator
from typing import Annotated, Any, NotRequired, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from graph.identity import keep_first

__all__ = ["AirlockState", "InputState", "ToolTask"]


class InputState(TypedDict):
    """What a caller sends: new messages only."""

    messages: Annotated[list[AnyMessage], add_messages]


class AirlockState(InputState, total=False):
    """The full state of a thread.

    Attributes:
        decisions: Every guard and guardrail decision of the thread, PII-free, in order.
        guarded_ids: Ids of the customer messages the input guard has already checked.
        input_action: The input guard's final action for the latest user message.
        owner: The customer the thread belongs to: the verified customer of its first message;
            only they may answer its gates (see ``graph.identity``).
    """

    decisions: Annotated[list[dict[str, Any]], operator.add]
    guarded_ids: Annotated[list[str], operator.add]
    input_action: str
    owner: Annotated[str | None, keep_first]


class ToolTask(TypedDict):
    """The payload of one ``Send`` to ``guard_tool_call``: one task per tool call."""

    call: dict[str, Any]
    conversation: dict[str, Any]
    owner: NotRequired[str | None]
