"""``call_model``: the ReAct step, and the router that fans tool calls out, one task each."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.runtime import Runtime
from langgraph.types import Send

from graph.context import AirlockContext
from graph.identity import resolve_identity
from graph.state import INPUT_RISK_KEY, AirlockState, ToolTask, input_risk_fact
from nodes.guardrails.outcomes import OutcomeStore
from nodes.tracing import tracing_callbacks

__all__ = ["CallModel", "RouteAfterModel", "admit_tool_calls", "customer_texts", "history_window"]

def customer_texts(messages: Sequence[AnyMessage]) -> list[str]:
    """Return the texts of the customer's own messages: the only input of a domain's conversation facts.

    Only human messages count, so the model cannot create a conversation fact by writing it.
    """
    return [m.content for m in messages if isinstance(m, HumanMessage) and isinstance(m.content, str)]


def history_window(messages: Sequence[AnyMessage], limit: int | None) -> list[AnyMessage]:
    """Return the last ``limit`` messages (all when None), never a tool answer without its call.

    The window starts after whatever would leave a ``ToolMessage`` first (its ``AIMessage``
    with the tool calls fell outside), so a call and its answers are sent together or not at
    all; chat APIs refuse an answer whose call is missing.
    """
    if limit is None:
        window = list(messages)
    else:
        window = list(messages[len(messages) - limit:]) if 0 < limit < len(messages) else (
            list(messages) if limit > 0 else [])
    start = 0
    while start < len(window) and isinstance(window[start], ToolMessage):
        start += 1
    return window[start:]


class CallModel:
    """The ``call_model`` node: one model turn with the domain's tools bound.

    The model's tool-call ids are never trusted: every call it returns gets a fresh id,
    unique in the thread, before it enters the state (a reused or duplicated id would
    otherwise hide a call or answer two calls with one result). Every call in the history
    gets an answer that tells the truth: a call left without one by a crashed task is
    answered from ``tool_outcomes`` (its write committed: executed, with the recorded
    result) or as not run.
    """

    def __init__(
        self, *, model: BaseChatModel, tools: list[dict[str, Any]], system_prompt: str,
        max_tool_rounds: int = 12, outcomes: OutcomeStore | None = None,
        scan_result: Callable[[str, str | None], tuple[str, list[dict[str, Any]]]] | None = None,
        max_history: int | None = None,
        earlier: Callable[[str, int | None], list[AnyMessage]] | None = None,
    ) -> None:
        self._model = model.bind_tools(tools) if tools else model
        self._system = system_prompt
        self._max_rounds = max_tool_rounds
        self._outcomes = outcomes
        # A recorded result reaches the model through the same tool-result guards as a live one.
        self._scan_result = scan_result
        # How many messages of earlier turns the model sees (``model.history.max_messages``;
        # None: all), and where earlier turns moved out of the state are read from.
        self._max_history = max_history
        self._earlier = earlier

    def __call__(
        self, state: AirlockState, config: RunnableConfig, runtime: Runtime[AirlockContext]
    ) -> dict[str, Any]:
        """Ask the model for the next step."""
        customer = state.get("owner") or resolve_identity(config, runtime.context).user_id
        thread_id = (config.get("configurable") or {}).get("thread_id")
        messages = list(state.get("messages", []))
        rounds = 0
        for message in reversed(messages):
            if isinstance(message, HumanMessage):
                break
            if isinstance(message, AIMessage) and (message.tool_calls or message.invalid_tool_calls):
                rounds += 1
        if rounds >= self._max_rounds:
            return {"messages": [AIMessage(
                content="I could not complete this request automatically. "
                "Please ask for a human agent if you need more help.",
            )]}
        # A run that failed half-way (a crash in a sibling tool task) can leave tool calls
        # without answers; every chat API refuses such a history, so answer them first.
        answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
        decisions: list[dict[str, Any]] = []
        repairs = [
            self._answer_dangling(call, invalid=invalid, thread_id=thread_id, decisions=decisions)
            for m in messages if isinstance(m, AIMessage) and m is not messages[-1]
            for call, invalid in _all_calls(m)
            if call.get("id") and call["id"] not in answered
        ]
        if repairs:
            messages = _insert_after_calls(messages, repairs)
        system = self._system + f"\n\nSigned-in customer: {customer or 'unknown'}"
        prompt = self._prompt(messages, thread_id)
        taken = _ids_in(messages)
        new: list[AnyMessage] = []
        while True:
            # Tracing sees the model call only: its input is the guarded (masked) conversation,
            # never the raw graph input that the first checkpoint of a turn holds.
            reply = self._model.invoke([SystemMessage(content=system), *prompt, *new],
                                       config={"callbacks": tracing_callbacks()})
            if not isinstance(reply, AIMessage):
                reply = AIMessage(content=str(getattr(reply, "content", reply)))
            reply = admit_tool_calls(reply, taken)
            rounds += 1 if (reply.tool_calls or reply.invalid_tool_calls) else 0
            if reply.tool_calls or not reply.invalid_tool_calls or rounds >= self._max_rounds:
                # Unreadable calls next to readable ones are answered by the next step's
                # repair, after their siblings ran (this message must stay last for routing).
                new.append(reply)
                break
            # Only unreadable calls: tell the model at once and let it try again.
            new.append(reply)
            new.extend(self._answer_dangling(call, invalid=True, thread_id=thread_id, decisions=decisions)
                       for call in reply.invalid_tool_calls)
        update: dict[str, Any] = {"messages": new}
        if repairs:
            # Rewrite the history so each answer sits right after its call (chat APIs insist).
            update["messages"] = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *messages, *new]
        if decisions:
            update["decisions"] = decisions
        return update

    def _prompt(self, messages: list[AnyMessage], thread_id: str | None) -> list[AnyMessage]:
        """Return the conversation the model sees: earlier turns within the history limit, then this turn whole."""
        start = next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)), 0)
        archived = self._earlier(thread_id, self._max_history) if self._earlier is not None and thread_id else []
        earlier = history_window([*archived, *messages[:start]], self._max_history)
        return [*earlier, *messages[start:]]

    def _answer_dangling(
        self, call: Mapping[str, Any], *, invalid: bool, thread_id: str | None,
        decisions: list[dict[str, Any]],
    ) -> ToolMessage:
        """Answer a call that has no answer: invalid, executed (its outcome is recorded) or not run."""
        call_id, name = str(call["id"]), str(call.get("name") or "")
        if invalid:
            content: dict[str, Any] = {
                "status": "invalid",
                "error": f"invalid arguments: {call.get('error') or 'unreadable'}; nothing was executed",
            }
            return ToolMessage(content=json.dumps(content), tool_call_id=call_id, name=name, status="error")
        outcome = self._outcomes.lookup(thread_id, call_id) if self._outcomes is not None else None
        if outcome is None:
            content = {"status": "not_run", "message": "This call was not run; nothing was executed."}
            return ToolMessage(content=json.dumps(content), tool_call_id=call_id, name=name, status="error")
        content = {
            "status": "executed",
            "message": "This call was executed (its task stopped after the change was saved); "
                       "the result below is the recorded outcome.",
            "result": outcome,
        }
        text = json.dumps(content, default=str)
        if self._scan_result is not None:
            text, scanned = self._scan_result(text, thread_id)
            decisions.extend(scanned)
        return ToolMessage(content=text, tool_call_id=call_id, name=name, status="success")


_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_INT64 = (-(2**63), 2**64 - 1)


def admit_tool_calls(reply: AIMessage, taken: set[str]) -> AIMessage:
    """Return ``reply`` with graph-unique tool-call ids and unstorable calls marked invalid.

    Every call (valid or not) gets a fresh id not in ``taken`` (which is updated), so the
    history can never hold two calls with one id. A call whose name is not a tool name, or
    whose arguments a checkpoint cannot hold (not an object, integers beyond 64 bits, values
    that are not JSON), moves to ``invalid_tool_calls`` with the reason: it is never routed
    to a tool and is answered ``invalid``. Anything else, even arguments the guard will
    refuse (NaN, NUL bytes), stays a tool call for ``guard_tool_call`` to answer.
    """
    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for call in reply.tool_calls:
        name, args = call.get("name"), call.get("args")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            invalid.append({"type": "invalid_tool_call", "name": "invalid_tool_name", "args": None,
                            "id": _fresh_id(taken), "error": "the tool name is not a valid name"})
        elif not isinstance(args, Mapping) or not _storable(args, 0):
            invalid.append({"type": "invalid_tool_call", "name": name, "args": None, "id": _fresh_id(taken),
                            "error": "arguments must be a JSON object of JSON values"
                                     " (finite numbers, integers within 64 bits)"})
        else:
            valid.append({**call, "id": _fresh_id(taken)})
    for bad in reply.invalid_tool_calls:
        bad_name = bad.get("name")
        clean = isinstance(bad_name, str) and _TOOL_NAME.match(bad_name) is not None
        invalid.append({**bad, "id": _fresh_id(taken), "name": bad_name if clean else "invalid_tool_name",
                        "args": bad.get("args") if isinstance(bad.get("args"), str) else None})
    if not valid and not invalid:
        return reply
    order = iter([c["id"] for c in valid] + [c["id"] for c in invalid])
    content: Any = reply.content
    if isinstance(content, list):
        # Provider content blocks (e.g. Anthropic's tool_use) carry the ids too: keep them in step.
        content = [
            {**block, "id": next(order, block["id"])}
            if isinstance(block, dict) and block.get("type") in {"tool_use", "tool_call"} and "id" in block
            else block
            for block in content
        ]
    extra = {k: v for k, v in reply.additional_kwargs.items() if k not in {"tool_calls", "function_call"}}
    # model_copy, not the constructor: the reply is stored as the model sent it, minus the ids.
    return reply.model_copy(update={"tool_calls": valid, "invalid_tool_calls": invalid, "content": content,
                                    "additional_kwargs": extra})


def _fresh_id(taken: set[str]) -> str:
    while True:
        candidate = f"call_{uuid.uuid4().hex[:24]}"
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _storable(value: object, depth: int) -> bool:
    """Return True when a checkpoint can hold ``value`` (plain JSON, 64-bit integers)."""
    if depth > 32:
        return False
    if value is None or isinstance(value, bool | str | float):
        return True
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _storable(v, depth + 1) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_storable(v, depth + 1) for v in value)
    return False


def _all_calls(message: AIMessage) -> list[tuple[Mapping[str, Any], bool]]:
    """Return every call of ``message`` with whether it is an invalid (never routed) one."""
    return [(c, False) for c in message.tool_calls] + [(c, True) for c in message.invalid_tool_calls]


def _ids_in(messages: Sequence[AnyMessage]) -> set[str]:
    """Return every tool-call id the history already uses."""
    ids: set[str] = set()
    for message in messages:
        if isinstance(message, ToolMessage):
            ids.add(message.tool_call_id)
        elif isinstance(message, AIMessage):
            ids.update(str(c["id"]) for c, _ in _all_calls(message) if c.get("id"))
    return ids


def _insert_after_calls(messages: list[AnyMessage], repairs: list[ToolMessage]) -> list[AnyMessage]:
    """Place each synthetic answer right after the AI message that made the call."""
    by_call = {r.tool_call_id: r for r in repairs}
    out: list[AnyMessage] = []
    for message in messages:
        out.append(message)
        if isinstance(message, AIMessage):
            out.extend(by_call[str(c["id"])] for c, _ in _all_calls(message) if c.get("id") in by_call)
    return out


class RouteAfterModel:
    """The router after ``call_model``: one ``guard_tool_call`` task per tool call, or the output guard.

    Each task carries the conversation facts: the domain's, derived by code from the
    customer's own messages (``DomainPlugin.conversation_facts``), and the input guard's risk
    of the thread (which the model cannot touch).
    """

    def __init__(
        self, *, conversation_facts: Callable[[Sequence[str]], Mapping[str, Any]],
        earlier_texts: Callable[[str], list[str]] | None = None,
    ) -> None:
        self._facts = conversation_facts
        # The customer's messages of earlier turns, moved out of the state (see graph.records).
        self._earlier_texts = earlier_texts

    def __call__(self, state: AirlockState, config: RunnableConfig) -> list[Send] | str:
        """Fan tool calls out as one ``guard_tool_call`` task each, or finish the turn."""
        messages = state.get("messages", [])
        last = messages[-1] if messages else None
        if isinstance(last, AIMessage) and last.tool_calls:
            # Calls already answered (a resumed turn) are not sent again.
            answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
            thread_id = (config.get("configurable") or {}).get("thread_id")
            texts = self._earlier_texts(str(thread_id)) if self._earlier_texts and thread_id else []
            conversation = {**self._facts([*texts, *customer_texts(messages)]),
                            INPUT_RISK_KEY: input_risk_fact(state)}
            return [
                Send("guard_tool_call", ToolTask(call=dict(call), conversation=conversation,
                                                 owner=state.get("owner")))
                for call in last.tool_calls
                if call.get("id") not in answered
            ] or "guard_output"
        return "guard_output"
