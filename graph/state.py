"""Graph state: the current turn's messages and guard decisions, and what the guards carry across turns.

Lists that grew with the conversation are kept small: the input guard starts each turn by
moving finished turns' messages to ``thread_messages`` and replacing ``decisions`` and
``guarded_ids`` (``Overwrite``); every decision is also a row of ``guard_decisions``
(see ``graph.records``), which is where a thread's whole history of decisions is read.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Annotated, Any, NotRequired, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from langgraph.types import Overwrite

from graph.identity import keep_first

__all__ = [
    "INPUT_RISK_KEY",
    "NO_RISK",
    "RISK_LEVELS",
    "AirlockState",
    "InputState",
    "ToolTask",
    "input_risk_fact",
    "merge_input_risk",
    "written",
]

#: Risk levels of a customer message, lowest first: ``none`` (the guards were sure, or a
#: human reviewer let it through), ``uncertain`` (in the classifiers' uncertain band and let
#: through unreviewed) and ``high`` (blocked).
RISK_LEVELS = ("none", "uncertain", "high")
#: The key under which the tool task carries the risk and the guard puts it in ``facts``.
INPUT_RISK_KEY = "input_risk"
NO_RISK: dict[str, Any] = {"level": "none", "heads": [], "max_score": 0.0, "thread_level": "none"}


def _rank(level: Any) -> int:
    # Anything that is not a known level counts as the highest: code writes this value,
    # so a malformed one is a bug, and a bug must not lower the risk.
    return RISK_LEVELS.index(level) if level in RISK_LEVELS else len(RISK_LEVELS) - 1


def merge_input_risk(current: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    """Reduce ``input_risk``: the latest message's risk, and the highest level the thread has seen.

    ``thread_level`` never goes down, so an attack followed by an innocent "go ahead" in a
    later turn is still a risky thread.
    """
    if not new:
        return dict(current or NO_RISK)
    previous = (current or NO_RISK).get("thread_level", "none")
    level = new.get("level", "high")
    top = max(_rank(previous), _rank(level), _rank(new.get("thread_level", "none")))
    return {**new, "thread_level": RISK_LEVELS[top]}


def input_risk_fact(carrier: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the ``facts.input_risk`` value from what a tool task carries (``NO_RISK`` if absent).

    Every key is always present, so a rule such as ``facts.input_risk.thread_level != 'none'``
    never fails on a missing field.
    """
    risk = carrier.get(INPUT_RISK_KEY) if isinstance(carrier, Mapping) else None
    if not isinstance(risk, Mapping):
        return dict(NO_RISK)
    heads = risk.get("heads")
    score = risk.get("max_score")
    return {
        "level": RISK_LEVELS[_rank(risk.get("level", "none"))],
        "heads": [str(h) for h in heads] if isinstance(heads, list | tuple) else [],
        "max_score": float(score) if isinstance(score, int | float) and not isinstance(score, bool) else 0.0,
        "thread_level": RISK_LEVELS[_rank(risk.get("thread_level", "none"))],
    }


def written(value: Any) -> Any:
    """Return what a node's update writes to a channel (an ``Overwrite``'s value, else the value)."""
    return value.value if isinstance(value, Overwrite) else value


class InputState(TypedDict):
    """What a caller sends: new messages only."""

    messages: Annotated[list[AnyMessage], add_messages]


class AirlockState(InputState, total=False):
    """The full state of a thread.

    Attributes:
        messages: The current turn (the input guard moves finished turns to ``thread_messages``;
            a turn whose tool calls are not all answered stays until they are).
        decisions: The current turn's guard and guardrail decisions, PII-free, in order (the
            input guard replaces them when a turn starts; the thread's are in ``guard_decisions``).
        guarded_ids: Ids of the messages in state the input guard has already checked.
        input_action: The input guard's final action for the latest user message.
        owner: The customer the thread belongs to: the verified customer of its first message;
            only they may answer its gates (see ``graph.identity``).
        input_risk: The input guard's risk of the latest customer message (``level``,
            ``heads``, ``max_score``) and the highest level of the thread (``thread_level``);
            the tool guard gives it to the rules as ``facts.input_risk``.
    """

    decisions: Annotated[list[dict[str, Any]], operator.add]
    guarded_ids: Annotated[list[str], operator.add]
    input_action: str
    owner: Annotated[str | None, keep_first]
    input_risk: Annotated[dict[str, Any], merge_input_risk]


class ToolTask(TypedDict):
    """The payload of one ``Send`` to ``guard_tool_call``: one task per tool call.

    ``conversation`` holds what the graph derived from the customer's own messages, including
    the thread's ``input_risk`` (under :data:`INPUT_RISK_KEY`), fixed when the task is sent so
    a resumed task decides on the same risk.
    """

    call: dict[str, Any]
    conversation: dict[str, Any]
    owner: NotRequired[str | None]
