"""``guard_input``: run the input guard pipeline on the newest customer message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from graph.context import AirlockContext
from graph.identity import Identity, resolve_identity
from graph.limits import MAX_MESSAGE_CHARS, too_long
from graph.state import AirlockState, merge_input_risk
from nodes.audit import AuditLog
from nodes.guards.base import Action, GuardContext
from nodes.metrics import record_decisions

__all__ = [
    "BLOCKED_PLACEHOLDER",
    "UNCERTAIN_ACTIONS",
    "InputGuard",
    "finished_turns",
    "message_risk",
    "resolve_uncertain",
    "respond_refusal_factory",
    "route_after_input",
    "too_long_message",
    "too_long_text",
]

BLOCKED_PLACEHOLDER = "[message withheld by the input guard]"


#: What an uncertain message (the pipeline's ESCALATE) becomes: ``block``; ``allow``;
#: ``review`` (a human decides before the agent sees it); ``proceed`` (the agent sees it at
#: once and its risk becomes ``facts.input_risk`` for the tool rules).
UNCERTAIN_ACTIONS = ("block", "allow", "review", "proceed")


def resolve_uncertain(action: Action, uncertain_action: str) -> tuple[Action, str]:
    """Return what a pipeline decision becomes under the policy, and the message's risk level.

    Only the uncertain band (``ESCALATE``) is resolved: ``allow``/``proceed`` let the agent answer
    (risk ``uncertain``), ``block`` blocks (``high``), ``review`` keeps it ``ESCALATE`` for a human
    (``pending_review`` until one decides). Other decisions pass through.
    """
    if action is Action.ESCALATE:
        if uncertain_action in ("allow", "proceed"):
            return Action.ALLOW, "uncertain"
        if uncertain_action == "review":
            return Action.ESCALATE, "pending_review"
        return Action.BLOCK, "high"
    return action, "high" if action is Action.BLOCK else "none"


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


def finished_turns(messages: list[AnyMessage], fresh_ids: set[str]) -> int:
    """Return how many leading messages belong to finished turns (they may leave the state).

    Everything before the first new customer message, except from the first AI message
    whose tool calls are not all answered: ``call_model`` answers those (a crashed task)
    from the state, next to their call.
    """
    cut = next((i for i, m in enumerate(messages) if m.id in fresh_ids), len(messages))
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    for i, message in enumerate(messages[:cut]):
        if isinstance(message, AIMessage) and any(
            c.get("id") not in answered for c in [*message.tool_calls, *message.invalid_tool_calls]
        ):
            return i
    return cut


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
        archive: Callable[[str, list[AnyMessage]], None] | None = None,
        one_turn: bool = True,
    ) -> None:
        if uncertain_action not in UNCERTAIN_ACTIONS:
            raise ValueError(f"uncertain_action must be one of {UNCERTAIN_ACTIONS}, got {uncertain_action!r}")
        self._pipeline, self._audit = pipeline, audit
        self._uncertain = uncertain_action
        self._vault_for = vault_for
        self._review_uncertain = review_uncertain
        # Where finished turns' messages go when a turn starts (None: they stay in the state).
        self._archive = archive
        # False keeps every turn's decisions and guarded ids in the state, as before issue 13
        # (only ``airlock bench growth`` builds it, to measure the difference).
        self._one_turn = one_turn

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
        fresh_ids = [str(m.id) for m in fresh]
        if not self._one_turn:
            return {"messages": replacements, "decisions": decisions, "input_action": final,
                    "guarded_ids": fresh_ids, "owner": owner, "input_risk": risk}
        # A new turn: the state keeps it alone (decisions, guarded ids; finished turns' messages
        # are moved to the transcript, idempotently, so a re-run moves nothing twice).
        messages = list(state.get("messages", []))
        removed: list[RemoveMessage] = []
        if self._archive is not None and thread_id is not None:
            cut = finished_turns(messages, set(fresh_ids))
            if cut:
                self._archive(str(thread_id), messages[:cut])
                removed = [RemoveMessage(id=str(m.id)) for m in messages[:cut]]
                messages = messages[cut:]
        kept = {str(m.id) for m in messages}
        guarded = [i for i in state.get("guarded_ids", []) if i in kept] + fresh_ids
        return {"messages": [*removed, *replacements], "decisions": Overwrite(decisions), "input_action": final,
                "guarded_ids": Overwrite(guarded), "owner": owner, "input_risk": risk}

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
            "decisions": Overwrite([decision]), "input_action": "block",
            "guarded_ids": [str(m.id) for m in fresh],
        }

    def _guard(
        self, message: HumanMessage, ctx_rt: AirlockContext, thread_id: str | None, actor: str
    ) -> tuple[Action, str, list[dict[str, Any]], dict[str, Any]]:
        text = _text(message)
        if len(text) > MAX_MESSAGE_CHARS:
            # Refused before any scanner runs (whatever the entry path: the app checks this
            # too, LangGraph's API does not); the checkpointer never stored the text either.
            size = {"stage": "input", "layer": "size_limit", "action": "block", "reason": "message_too_long",
                    "scores": {}, "metadata": {"chars": len(text), "limit": MAX_MESSAGE_CHARS}}
            return Action.BLOCK, text, [size], {
                "action": "block", "pipeline_action": "block", "input_risk": message_risk([], level="none"),
                "latency_ms": 0.0, "decisions": [size]}
        ctx = GuardContext(
            direction="input", thread_id=thread_id, user_id=ctx_rt.user_id,
            vault=self._vault_for(thread_id) if self._vault_for else None,
        )
        result = self._pipeline.run(text, ctx)
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
            else:
                # "review" without a reviewer cannot hold the message: it is refused.
                action, level = resolve_uncertain(
                    action, "block" if self._uncertain == "review" else self._uncertain)
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


def too_long_message(chars: int, limit: int) -> str:
    """Tell the customer their message is over the length limit, and by how much."""
    return (f"Your message is {chars:,} characters long; the limit is {limit:,}. It was not read and "
            "nothing of it was cut: please send it again in shorter parts.")


def too_long_text(decisions: list[dict[str, Any]]) -> str:
    """Return :func:`too_long_message` when this turn's input was blocked for its length, else ""."""
    for decision in reversed(decisions):
        if decision.get("stage") != "input":
            break  # the decisions of an earlier turn
        meta = decision.get("metadata") or {}
        if decision.get("action") == "block" and decision.get("reason") == "length" and "max_chars" in meta:
            return too_long_message(int(meta.get("chars", 0)), int(meta["max_chars"]))
    return ""


def respond_refusal_factory(message: str) -> Callable[[AirlockState], dict[str, Any]]:
    """Build the ``respond_refusal`` node with the policy's refusal text."""

    def respond_refusal(state: AirlockState) -> dict[str, Any]:
        """Answer a blocked message without calling the model (a too-long one is told the limit)."""
        last = (state.get("decisions") or [{}])[-1]
        if last.get("layer") == "size_limit":  # over the graph's hard limit: never stored
            meta = last.get("metadata") or {}
            text = too_long(int(meta.get("chars", 0)), int(meta.get("limit", MAX_MESSAGE_CHARS)))
        else:  # over the policy's prefilter limit
            text = too_long_text(state.get("decisions", [])) or message
        return {"messages": [AIMessage(content=text, additional_kwargs={"airlock": "refusal"})]}

    return respond_refusal
