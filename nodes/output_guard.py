"""``guard_output``: check the model's final answer before the customer sees it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from graph.context import AirlockContext
from graph.state import AirlockState
from nodes.audit import AuditLog
from nodes.guards.base import Action, GuardContext
from nodes.metrics import record_decisions
from nodes.model.offline import TRANSFER_MESSAGE

__all__ = ["TRANSFER_MESSAGE", "OutputGuard"]

WITHHELD = "Sorry, I can't share that answer. A human agent can help if you need more."


def _transferred(messages: list[Any]) -> bool:
    """Return True when this turn's last tool call was a successful hand-off to a human."""
    for message in reversed(messages[:-1]):  # the newest message is the answer being guarded
        if isinstance(message, ToolMessage) and message.name == "transfer_to_human_agents":
            try:
                result = json.loads(str(message.content))
                status = result.get("status")
                if status == "deduplicated":
                    status = result.get("original_status")
            except (ValueError, AttributeError):
                status = None
            # Only a hand-off that happened is a transfer: one a reviewer rejected (or that
            # timed out, was declined or failed) must not tell the customer to hold on.
            return status == "ok"
        if isinstance(message, AIMessage) and not message.tool_calls:
            return False
    return False


class OutputGuard:
    """The ``guard_output`` node: output pipeline plus the transfer protocol."""

    def __init__(
        self, *, pipeline: Any | None, audit: AuditLog,
        vault_for: Callable[[str | None], Any] | None = None,
    ) -> None:
        self._pipeline, self._audit, self._vault_for = pipeline, audit, vault_for

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
        text = last.content if isinstance(last.content, str) else str(last.content)
        decisions: list[dict[str, Any]] = []
        # Policy rule 20 (transfer protocol) is enforced by code, not left to the model.
        if _transferred(messages) and text != TRANSFER_MESSAGE:
            text = TRANSFER_MESSAGE
            decisions.append({"stage": "output", "layer": "transfer_protocol", "action": "modify"})
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
