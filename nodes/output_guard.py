"""``guard_output``: check the model's final answer before the customer sees it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from graph.context import AirlockContext
from graph.domain import OutputRules
from graph.state import AirlockState
from nodes.audit import AuditLog
from nodes.guards.base import Action, GuardContext
from nodes.metrics import record_decisions

__all__ = ["OutputGuard", "handoff_text", "review_note"]

WITHHELD = "Sorry, I can't share that answer. A human agent can help if you need more."


@dataclass(frozen=True, slots=True)
class _Handoff:
    """This turn's hand-off: whether it happened, the reviewer's note, and the result's message."""

    happened: bool
    review: dict[str, Any] = field(default_factory=dict)
    message: str = ""


def _handoff(messages: list[Any], tool: str | None) -> _Handoff | None:
    """Return this turn's hand-off to a human (happened or not), or None when there was none."""
    if tool is None:
        return None
    for message in reversed(messages[:-1]):  # the newest message is the answer being guarded
        if isinstance(message, ToolMessage) and message.name == tool:
            try:
                result = json.loads(str(message.content))
                status = result.get("status")
                if status == "deduplicated":
                    status = result.get("original_status")
                review, said = result.get("review"), result.get("message")
            except (ValueError, AttributeError):
                status, review, said = None, None, None
            # Only a hand-off that happened is a transfer: one a reviewer rejected (or that
            # timed out, was declined or failed) must not tell the customer to hold on.
            if status != "ok":
                return _Handoff(False, message=str(said or "").strip())
            approved = isinstance(review, dict) and review.get("decision") == "approve"
            return _Handoff(True, review=dict(review) if approved else {})
        if isinstance(message, AIMessage) and not message.tool_calls:
            return None
    return None


def _claim_pattern(text: str) -> re.Pattern[str] | None:
    """Compile the hand-off text's sentences into one pattern: any case, any spacing."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    if not sentences:
        return None
    return re.compile("|".join(r"\s+".join(map(re.escape, s.split())) for s in sentences), re.IGNORECASE)


def handoff_text(review: dict[str, Any], fixed: str) -> str:
    """Say what happens after a hand-off: the policy's notice (else the fixed text) and the reviewer's comment."""
    text = str(review.get("notice") or "").strip() or fixed
    comment = str(review.get("comment") or "").strip()
    if comment:
        text += f"\n\nThe reviewer's comment: \"{comment}\""
    return text


def _review_edits(messages: list[Any]) -> list[dict[str, Any]]:
    """Return the reviewer edits (``review`` of a tool result) of this turn's tool calls, oldest first."""
    found: list[dict[str, Any]] = []
    for message in reversed(messages[:-1]):
        if isinstance(message, AIMessage) and not message.tool_calls:
            break  # the previous turn's answer
        if not isinstance(message, ToolMessage):
            continue
        try:
            review = json.loads(message.text).get("review")
        except (ValueError, AttributeError):
            continue
        if isinstance(review, dict) and review.get("decision") == "edit":
            found.insert(0, review)
    return found


def _figure(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def review_note(review: dict[str, Any]) -> str:
    """Say, in code's words, what a reviewer changed in a request and what they wrote."""
    changed = review.get("changed")
    if not isinstance(changed, dict):
        changed = {}
    changes = "; ".join(
        f"{str(k).replace('_', ' ')}: {_figure(v.get('from'))} -> {_figure(v.get('to'))}"
        for k, v in changed.items() if isinstance(v, dict)
    )
    note = "A reviewer changed your request"
    note += f" ({changes})." if changes else "."
    comment = str(review.get("comment") or "").strip()
    if comment:
        note += f" The reviewer's comment: \"{comment}\""
    return note


class OutputGuard:
    """The ``guard_output`` node: output pipeline plus the domain's transfer protocol (``rules``)."""

    def __init__(
        self, *, pipeline: Any | None, audit: AuditLog, rules: OutputRules,
        vault_for: Callable[[str | None], Any] | None = None,
    ) -> None:
        self._pipeline, self._audit, self._vault_for = pipeline, audit, vault_for
        self._rules = rules
        self._claim = _claim_pattern(rules.handoff_text)  # compiled once, at start-up

    def __call__(
        self, state: AirlockState, config: RunnableConfig, runtime: Runtime[AirlockContext]
    ) -> dict[str, Any]:
        """Guard the final answer."""
        messages = list(state.get("messages", []))
        last = messages[-1] if messages else None
        if not isinstance(last, AIMessage) or last.tool_calls:
            return {}
        ctx_rt = runtime.context or AirlockContext()
        thread_id = (config.get("configurable") or {}).get("thread_id")
        text: str = str(last.text)  # content blocks read as their text, never as a Python repr
        decisions: list[dict[str, Any]] = []
        # The transfer protocol is enforced by code, not left to the model.
        handoff = _handoff(messages, self._rules.handoff_tool)
        if handoff is not None and handoff.happened and text != handoff_text(handoff.review, self._rules.handoff_text):
            text = handoff_text(handoff.review, self._rules.handoff_text)
            decisions.append({"stage": "output", "layer": "transfer_protocol", "action": "modify"})
        elif handoff is not None and not handoff.happened and self._claim is not None and self._claim.search(text):
            # The model announced a transfer that did not happen: code says what did.
            rest = re.sub(r"^[\s.!?,;:]+", "", self._claim.sub("", text)).strip()
            said = handoff.message if handoff.message and handoff.message not in rest else ""
            text = "\n\n".join(part for part in (" ".join(filter(None, (self._rules.handoff_failed_text, said))),
                                                  rest) if part)
            decisions.append({"stage": "output", "layer": "transfer_protocol", "action": "modify"})
        # A reviewer's edit and comment reach the customer in code's words, whatever the model said.
        notes = [review_note(r) for r in _review_edits(messages)]
        if notes:
            text = "\n\n".join([text, *notes]) if text else "\n\n".join(notes)
            decisions.append({"stage": "output", "layer": "review_note", "action": "modify"})
        if self._pipeline is not None:
            ctx = GuardContext(
                direction="output", thread_id=thread_id, user_id=ctx_rt.user_id,
                vault=self._vault_for(thread_id) if self._vault_for else None,
            )
            result = self._pipeline.run(text, ctx)
            decisions.extend({"stage": "output", **d.to_dict()} for d in result.decisions)
            text = WITHHELD if result.action is Action.BLOCK else result.text
            self._audit.append(
                "guard.output", actor=ctx_rt.actor or ctx_rt.user_id or "anonymous",
                thread_id=thread_id, payload={"action": result.action.value, "decisions": decisions},
            )
        record_decisions(decisions)
        if text == last.content and not decisions:
            return {}
        replacement = AIMessage(content=text, id=last.id, additional_kwargs=last.additional_kwargs)
        return {"messages": [replacement], "decisions": decisions}
