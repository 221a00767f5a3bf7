"""``guard_input``: run the input guard pipeline on the newest customer message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from graph.context import AirlockContext
from graph.identity import Identity, resolve_identity
from graph.state import AirlockState, merge_input_risk
from nodes.audit import AuditLog
from nodes.guards.base import Action, GuardContext
from nodes.metrics import record_decisions

__all__ = [
    "BLOCKED_PLACEHOLDER",
    "UNCERTAIN_ACTIONS",
    "InputGuard",
    "message_risk",
    "respond_refusal_factory",
    "route_after_input",
]

BLOCKED_PLACEHOLDER = "[message withheld by the input guard]"


#: What an uncertain message (the pipeline's ESCALATE) becomes: ``block``; ``allow``;
#: ``review`` (a human decides before the agent sees it); ``proceed`` (the agent sees it at
#: once and its risk becomes ``facts.input_risk`` for the tool rules).
UNCERTAIN_ACTIONS = ("block", "allow", "review", "proceed")


def message_risk(decisions: list[dict[str, Any]], *, level: str) -> dict[str, Any]:
    """Return the risk of one message: ``level``, the heads or layers that doubted, their top score.

    Args:
        decisions: The pipeline's decisions for the message (``GuardResult.to_dict`` form).
        level: One of :data:`graph.state.RISK_LEVELS`, decided by the caller.

    Returns:
        ``{"level", "heads", "max_score"}``; the graph adds ``thread_level``.
    """
    heads: list[str] = []
    top = 0.0
    for d in decisions:
        if d.get("action") not in ("escalate", "block"):
            continue
        meta = d.get("metadata") or {}
        named = [*meta.get("uncertain", ()), *meta.get("blocked_by", ())] or [str(d.get("layer", ""))]
        scores = d.get("scores") or {}
        for head in named:
            if head not in heads:
                heads.append(head)
            if isinstance(scores.get(head), int | float):
                top = max(top, float(scores[head]))
    return {"level": level, "heads": heads, "max_score": round(top, 4)}


def _text(message: HumanMessage) -> str:
    if isinstance(message.content, str):
        return message.content
    return " ".join(
        part.get("text", "") if isinstance(part, dict) else str(part) for part in message.content
    )


class InputGuard:
    """The ``guard_input`` node.

    The newest human message is replaced in state by what the pipeline let through
    (normalised, PII masked) so the raw text never reaches the model or a later turn;
    a blocked message is replaced by a placeholder.
    """

    def __init__(
        self,
        *,
        pipeline: Any,
        audit: AuditLog,
        uncertain_action: str = "block",
        vault_for: Callable[[str | None], Any] | None = None,
        review_uncertain: Callable[..., bool] | None = None,
    ) -> None:
        if uncertain_action not in UNCERTAIN_ACTIONS:
            raise ValueError(f"uncertain_action must be one of {UNCERTAIN_ACTIONS}, got {uncertain_action!r}")
        self._pipeline, self._audit = pipeline, audit
        self._uncertain = uncertain_action
        self._vault_for = vault_for
        self._review_uncertain = review_uncertain

    def __call__(
        self, state: AirlockState, config: RunnableConfig, runtime: Runtime[AirlockContext]
    ) -> dict[str, Any]:
        """Guard every customer message not checked yet (tracked by id in state, not by a flag)."""
        seen = set(state.get("guarded_ids", []))
        fresh = [m for m in state.get("messages", []) if isinstance(m, HumanMessage) and m.id not in seen]
        if not fresh:
            return {"input_action": "allow"}
        who = resolve_identity(config, runtime.context)
        ctx_rt = AirlockContext(user_id=who.user_id, actor=who.actor, roles=list(who.roles))
        thread_id = (config.get("configurable") or {}).get("thread_id")
        actor = who.actor
        owner = state.get("owner") or who.user_id
        refused = who.refused or ("" if owner == who.user_id else "the thread belongs to another customer")
        if refused:
            return self._refuse(fresh, who, refused, thread_id)
        replacements: list[HumanMessage] = []
        decisions: list[dict[str, Any]] = []
        final = "allow"
        audits: list[dict[str, Any]] = []
        risk = state.get("input_risk")
        for message in fresh:
            action, text, found, audit = self._guard(message, ctx_rt, thread_id, actor)
            decisions.extend(found)
            # Audited with the thread's level as it stands after this message.
            risk = audit["input_risk"] = merge_input_risk(risk, audit["input_risk"])
            audits.append(audit)
            blocked = action is Action.BLOCK
            replacements.append(HumanMessage(
                content=BLOCKED_PLACEHOLDER if blocked else text, id=message.id,
                additional_kwargs={"airlock_guard": action.value},
            ))
            if blocked:
                final = "block"
        # Audited only now: a later message may pause for a reviewer, and this node re-runs from
        # its first line on resume, so nothing is written before every message got its decision.
        for audit in audits:
            self._audit.append("guard.input", actor=actor, thread_id=thread_id, payload=audit)
        record_decisions(decisions)
        return {"messages": replacements, "decisions": decisions, "input_action": final,
                "guarded_ids": [str(m.id) for m in fresh], "owner": owner, "input_risk": risk}

    def _refuse(
        self, fresh: list[HumanMessage], who: Identity, reason: str, thread_id: str | None
    ) -> dict[str, Any]:
        # Nothing of the message is kept or shown to the model: it was sent by someone who may
        # not speak in this thread (or as this customer).
        self._audit.append("identity.refused", actor=who.actor, thread_id=thread_id,
                           payload={"reason": reason, "claimed_user_id": who.user_id})
        decision = {"stage": "input", "layer": "identity", "action": "block", "reason": reason}
        return {
            "messages": [HumanMessage(content=BLOCKED_PLACEHOLDER, id=m.id,
                                      additional_kwargs={"airlock_guard": "block"}) for m in fresh],
            "decisions": [decision], "input_action": "block", "guarded_ids": [str(m.id) for m in fresh],
        }

    def _guard(
        self, message: HumanMessage, ctx_rt: AirlockContext, thread_id: str | None, actor: str
    ) -> tuple[Action, str, list[dict[str, Any]], dict[str, Any]]:
        ctx = GuardContext(
            direction="input", thread_id=thread_id, user_id=ctx_rt.user_id,
            vault=self._vault_for(thread_id) if self._vault_for else None,
        )
        result = self._pipeline.run(_text(message), ctx)
        action = result.action
        decisions = [{"stage": "input", **d.to_dict()} for d in result.decisions]
        # The risk left after this node: a human who let the message through vouched for it.
        level = "high" if action is Action.BLOCK else "none"
        resolution: dict[str, Any] = {}
        if action is Action.ESCALATE:
            resolution = {"uncertain_action": self._uncertain}
            if self._uncertain == "review" and self._review_uncertain is not None:
                approved = self._review_uncertain(
                    thread_id=thread_id, actor=actor, text=result.text, message_id=str(message.id),
                    decisions=decisions,
                )
                action = Action.ALLOW if approved else Action.BLOCK
                level = "none" if approved else "high"
            elif self._uncertain in ("allow", "proceed"):
                action, level = Action.ALLOW, "uncertain"
            else:
                action, level = Action.BLOCK, "high"
        risk = message_risk(decisions, level=level)
        if resolution.get("uncertain_action") == "proceed":
            # Shown with the turn's decisions: the message went on unreviewed, its writes will not.
            decisions.append({"stage": "input", "layer": "uncertain_band", "action": "proceed",
                              "reason": "uncertain:" + ",".join(risk["heads"]),
                              "scores": {"max_score": risk["max_score"]}, "metadata": {}})
        audit = {"action": action.value, "pipeline_action": result.action.value, **resolution,
                 "input_risk": risk, "latency_ms": round(result.latency_ms, 3), "decisions": decisions}
        return action, result.text, decisions, audit


def route_after_input(state: AirlockState) -> str:
    """Send blocked input to the refusal, everything else to the agent."""
    return "respond_refusal" if state.get("input_action") == "block" else "call_model"


def respond_refusal_factory(message: str) -> Callable[[AirlockState], dict[str, Any]]:
    """Build the ``respond_refusal`` node with the policy's refusal text."""

    def respond_refusal(state: AirlockState) -> dict[str, Any]:
        """Answer a blocked message without calling the model."""
        return {"messages": [AIMessage(content=message, additional_kwargs={"airlock": "refusal"})]}

    return respond_refusal
