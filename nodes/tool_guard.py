"""``guard_tool_call``: one task per tool call: pre-tool, idempotency, escalation, confirm, resilience, tool.

LangGraph re-runs a node from its first line when it is resumed, so everything before
an ``interrupt()`` here is a pure read (facts, CEL checks, the idempotency lookup);
side effects (audit rows, the idempotency claim, the tool itself) come after it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphInterrupt
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import ValidationError

from graph.cel import CelError, Condition, render_template
from graph.context import AirlockContext
from graph.domain import Domain, StaleDecisionError, describe_validation_error
from graph.identity import refuse_foreign_answers, resolve_identity
from graph.policy import (
    ConfirmGuardrail,
    IdempotencyGuardrail,
    Policy,
    PreToolGuardrail,
    ResilienceGuardrail,
    check_policy_for_tools,
)
from graph.state import INPUT_RISK_KEY, ToolTask, input_risk_fact
from nodes.audit import AuditLog
from nodes.guardrails.canonical import InvalidArgumentsError, canonical_arguments
from nodes.guardrails.confirm import call_hash, parse_confirm_resume
from nodes.guardrails.idempotency import IdempotencyStore, IdempotencyTimeoutError, idempotency_key, write_key
from nodes.guardrails.outcomes import OutcomeStore
from nodes.guardrails.resilience import BreakerRegistry, ResilientCaller, ServiceUnavailableError
from nodes.guardrails.stated import ask_stated_facts
from nodes.guards.vault import PlaceholderTypeError
from nodes.metrics import record_tool

__all__ = ["ReviewDecision", "Reviewer", "ToolGuard", "ToolOutcome"]

log = logging.getLogger(__name__)

Redactor = Callable[[Any], Any]
_REPLAY_TTL = 7 * 86400.0  # how long a reviewed read's result is kept for the node's re-run
# A write refused by its own transaction is decided again on fresh facts; past this many
# rounds in one node run, the customer is told to try again.
_MAX_REVALIDATIONS = 3
_UNKNOWN = {
    "status": "unknown",
    "executed": "unknown",
    "message": "We could not confirm whether this request went through. It will not be repeated "
    "automatically; it is being checked, and asking again will report what happened.",
}


def _binding(state: str, thread_id: str | None, call_id: str) -> str:
    return f"{state}|{thread_id or ''}|{call_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _PreVerdict:
    """The first pre-tool check that fired (or allow / none)."""

    action: str
    rule: str = ""
    message: str = ""
    detail: str = ""


class _Authorisation:
    """One decision (rules, review case, consent bound to a call hash), re-checked inside the write.

    Implements :class:`graph.domain.WriteGuard`: the domain's write transaction locks the
    rows, recomputes the facts and calls :meth:`verify`; any difference from what was decided,
    reviewed or confirmed raises :class:`StaleDecisionError` and nothing is written.
    """

    def __init__(
        self, *, guard: ToolGuard, tool: str, args: dict[str, Any], verdict: _PreVerdict, case: str,
        confirm_needed: bool, digest: str, thread_id: str | None, user_id: str | None,
        conversation: Mapping[str, Any], actor: str, call_id: str, claim_key: str, claim_owner: str,
        backend_key: str | None, audit_meta: dict[str, Any], audit_args: Mapping[str, Any],
    ) -> None:
        self._guard, self._tool, self._args = guard, tool, args
        self._verdict, self._case, self._confirm_needed, self._digest = verdict, case, confirm_needed, digest
        self._thread_id, self._user_id, self._conversation = thread_id, user_id, dict(conversation)
        self._actor, self._call_id, self._claim_key = actor, call_id, claim_key
        self._claim_owner, self._backend_key = claim_owner, backend_key
        self._audit_meta, self._audit_args = audit_meta, dict(audit_args)
        self.recorded = False
        self.content: dict[str, Any] = {}
        self.scan_decisions: list[dict[str, Any]] = []

    @property
    def thread_id(self) -> str | None:
        """Return the conversation."""
        return self._thread_id

    @property
    def user_id(self) -> str | None:
        """Return the authenticated customer."""
        return self._user_id

    @property
    def conversation(self) -> Mapping[str, Any]:
        """Return the customer-stated facts."""
        return self._conversation

    def verify(self, facts: dict[str, Any], state_token: str) -> None:
        """Refuse the write unless rules, review case, consent and quote are what was decided."""
        guard, tool, args = self._guard, self._tool, self._args
        facts[INPUT_RISK_KEY] = input_risk_fact(self._conversation)  # as when decided (graph, not domain)
        variables = {"args": args, "facts": facts}
        verdict = guard._pre_tool(tool, variables)
        if (verdict.action, verdict.rule) != (self._verdict.action, self._verdict.rule):
            raise StaleDecisionError(f"policy check {verdict.rule or verdict.action} now applies")
        forced = (verdict.rule, verdict.message) if verdict.action == "escalate" else None
        case = guard._case(tool, args, facts, forced)
        if case != self._case:
            raise StaleDecisionError(f"review {case or 'none'} now applies")
        if guard._confirm_needed(tool, variables) != self._confirm_needed:
            raise StaleDecisionError("confirmation requirement changed")
        bound = _binding(state_token, self._thread_id, self._call_id)
        if self._digest and call_hash(tool, args, facts, bound) != self._digest:
            raise StaleDecisionError("the amount or the booking changed")

    def record(self, cursor: Any, result: Mapping[str, Any]) -> None:
        """Store the outcome and its audit event in the write's transaction."""
        guard = self._guard
        content = {"status": result.get("status", "ok"), **result}
        # What the model and the audit may see: the tool-result guards run here, once, so the
        # stored outcome (read back after a crash) is as safe to show as the live one.
        if guard._scan_result is not None:
            content, self.scan_decisions = guard._scan_tool_result(content, self._thread_id)
        self.content = content
        if guard._outcomes is not None:
            guard._outcomes.record(
                cursor, thread_id=self._thread_id, call_id=self._call_id, tool=self._tool,
                user_id=self._user_id, idempotency_key=self._backend_key,
                result={**content, "_claim_key": self._claim_key, "_owner": self._claim_owner},
            )
        shown = content if guard._masked_world else guard._redact(content)
        guard._audit.append_on(
            cursor, "tool.executed", actor=self._actor, thread_id=self._thread_id, tool=self._tool,
            payload={**{k: v for k, v in self._audit_meta.items() if v is not None},
                     "action": str(content.get("status", "ok")), "args": self._audit_args, "result": shown},
        )
        self.recorded = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewDecision:
    """A human reviewer's decision on an escalated call."""

    action: Literal["approve", "edit", "reject"]
    reviewer: str
    message: str = ""
    args: dict[str, Any] | None = None


class Reviewer(Protocol):
    """Escalation hook: returns None when no escalation applies, else the decision.

    It may call ``interrupt()``; it runs before the tool (``phase="before"``) and after
    it (``phase="after"``, with ``result``).
    """

    def __call__(
        self, *, phase: Literal["before", "after"], tool: str, args: dict[str, Any],
        facts: dict[str, Any], result: dict[str, Any] | None, thread_id: str | None,
        actor: str, call_id: str, forced: tuple[str, str] | None,
    ) -> ReviewDecision | None:
        """Escalate if a rule says so and return the reviewer's decision."""
        ...

    def case_id(
        self, *, phase: Literal["before", "after"], tool: str, args: dict[str, Any], facts: dict[str, Any],
        forced: tuple[str, str] | None,
    ) -> str | None:
        """Return the id of the case the call would be escalated for, without asking anyone."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolOutcome:
    """What one guarded tool call produced."""

    status: str
    content: dict[str, Any]
    decisions: tuple[dict[str, Any], ...] = ()


def _thread_id(config: RunnableConfig) -> str | None:
    return (config.get("configurable") or {}).get("thread_id")


class ToolGuard:
    """The ``guard_tool_call`` node: guardrails around one tool call."""

    def __init__(
        self,
        *,
        policy: Policy,
        domain: Domain,
        audit: AuditLog,
        idempotency: IdempotencyStore,
        breakers: BreakerRegistry,
        redact: Redactor = lambda value: value,
        reviewer: Reviewer | None = None,
        scan_result: Callable[[str, str | None], tuple[str, list[dict[str, Any]]]] | None = None,
        resolve: Callable[[Any, str | None], Any] | None = None,
        model_sees_masked_data: bool = False,
        outcomes: OutcomeStore | None = None,
    ) -> None:
        self._policy, self._domain, self._audit = policy, domain, audit
        # Where each write records its outcome, in its own transaction (None: not recorded).
        self._outcomes = outcomes
        self._idem, self._breakers, self._redact = idempotency, breakers, redact
        self._reviewer = reviewer
        self._scan_result = scan_result
        # Placeholders the model saw (e.g. <DATE_OF_BIRTH_1>) become the customer's real
        # values here, in code, just before validation: the model never handles them.
        self._resolve = resolve
        # When user input and tool results are both PII-masked, nothing the model sends or
        # gets back holds raw PII: audit and gate payloads then use the model's own
        # (placeholder) arguments instead of re-running Presidio on every call.
        self._masked_world = model_sees_masked_data
        # Compile once: conditions are validated at policy load, this keeps programs warm.
        self._conditions: dict[str, Condition] = {}
        check_policy_for_tools(policy, {n: spec.write for n, spec in domain.tools.items()})

    def _cond(self, source: str) -> Condition:
        cond = self._conditions.get(source)
        if cond is None:
            cond = self._conditions[source] = Condition.compile(source)
        return cond

    # -- the node -------------------------------------------------------------------
    def __call__(
        self, task: ToolTask, config: RunnableConfig, runtime: Runtime[AirlockContext]
    ) -> dict[str, Any]:
        """Guard and run one tool call; return its ToolMessage and decisions."""
        call = task["call"]
        # The call acts for the thread's owner; answers of anyone else are refused (asked again).
        who = resolve_identity(config, runtime.context)
        owner = task.get("owner") or who.user_id
        refuse_foreign_answers(config, who, owner)
        outcome = self.run(
            name=call["name"], raw_args=call.get("args") or {}, call_id=call["id"],
            user_id=owner, actor=who.actor,
            thread_id=_thread_id(config), conversation=task.get("conversation") or {},
        )
        content = json.dumps(outcome.content, default=str)
        message = ToolMessage(
            content=content, tool_call_id=call["id"], name=call["name"],
            status="error" if outcome.status in {"error", "invalid"} else "success",
        )
        return {"messages": [message], "decisions": list(outcome.decisions)}

    def run(
        self, *, name: str, raw_args: Mapping[str, Any], call_id: str, user_id: str | None,
        actor: str, thread_id: str | None, conversation: Mapping[str, Any], depth: int = 0,
    ) -> ToolOutcome:
        """Apply the chain to one call (pure reads until the first interrupt)."""
        spec = self._domain.tools.get(name)
        base: dict[str, Any] = {"tool": name, "tool_call_id": call_id}
        try:  # canonical arguments before anything reads them (not even the audit)
            raw_args = canonical_arguments(raw_args)
        except InvalidArgumentsError as exc:
            return self._finish("invalid", {"status": "invalid", "error": f"invalid arguments: {exc.reason}"},
                                thread_id, actor, name, base, {})
        if spec is None:
            return self._finish(
                "invalid", {"status": "invalid", "error": f"unknown tool {name!r}"},
                thread_id, actor, name, base, self._redact(dict(raw_args)),
            )
        shown_args = dict(raw_args)  # what the model sent: placeholders, never vault values
        if self._resolve is not None:
            try:
                raw_args = self._resolve(dict(raw_args), thread_id)
            except PlaceholderTypeError as exc:  # e.g. a date of birth put in a name
                return self._finish(
                    "invalid", {"status": "invalid", "error": f"invalid arguments: {exc}"},
                    thread_id, actor, name, base, self._redact(shown_args),
                )
        try:
            args = spec.args_schema.model_validate(dict(raw_args)).model_dump(mode="json")
        except ValidationError as exc:
            return self._finish(
                "invalid", {"status": "invalid", "error": f"invalid arguments: {describe_validation_error(exc)}"},
                thread_id, actor, name, base, self._redact(shown_args),
            )
        audit_args = shown_args if self._masked_world else self._redact(args)
        if spec.write and self._outcomes is not None:
            # The node is re-run after a crash that followed a committed write: report what the
            # write did (recorded in its own transaction) instead of asking or writing again.
            recorded = self._outcomes.lookup(thread_id, call_id)
            if recorded is not None:
                return self._recovered(name, recorded, thread_id, actor, base, audit_args)
        # What only the customer can state is asked here (an interrupt), never read from the chat.
        conversation = {**conversation, **ask_stated_facts(
            domain=self._domain, audit=self._audit, tool=name, args=args, call_id=call_id,
            user_id=user_id, actor=actor, thread_id=thread_id, conversation=conversation)}

        def again(edited: Mapping[str, Any]) -> ToolOutcome:
            # An edited call passes every guardrail again, as a new call.
            if depth >= 3:
                return self._finish(
                    "error", {"status": "error", "error": "too many edits"}, thread_id, actor,
                    name, base, edited,
                )
            return self.run(
                name=name, raw_args=edited, call_id=f"{call_id}.edit{depth + 1}", user_id=user_id,
                actor=actor, thread_id=thread_id, conversation=conversation, depth=depth + 1,
            )

        notice = ""
        for _round in range(_MAX_REVALIDATIONS):
            step = self._decide_and_run(
                name=name, args=args, spec_write=spec.write, call_id=call_id, user_id=user_id,
                actor=actor, thread_id=thread_id, conversation=conversation, audit_args=audit_args,
                base=base, again=again, notice=notice,
            )
            if isinstance(step, ToolOutcome):
                return step
            # The write's own transaction refused: the facts changed since the decision.
            notice = (
                "The figures changed since you confirmed, so nothing was done. "
                f"Please check the new details ({step.reason})."
            )
        return self._finish(
            "error", {"status": "error", "error": "The request could not be completed because the "
                      "reservation kept changing. Nothing was changed; please try again."},
            thread_id, actor, name, base, audit_args,
        )

    def _pre_tool(self, name: str, variables: Mapping[str, Any]) -> _PreVerdict:
        pre: PreToolGuardrail | None = self._policy.guardrail(name, PreToolGuardrail)
        if pre is None:
            return _PreVerdict(action="none")
        for check in pre.checks:
            try:
                hit = self._cond(check.when).test(variables)
            except CelError as exc:
                # Fail closed: a rule that cannot be evaluated denies the call.
                log.warning("pre-tool %s/%s failed to evaluate: %s", name, check.id, exc)
                return _PreVerdict(action="error", rule=check.id, message="This request could not be verified.",
                                   detail=f"rule_error: {exc}")
            if hit:
                return _PreVerdict(action=check.action, rule=check.id,
                                   message=render_template(check.message, variables))
        return _PreVerdict(action="allow")

    def _confirm_needed(self, name: str, variables: Mapping[str, Any]) -> bool:
        confirm: ConfirmGuardrail | None = self._policy.guardrail(name, ConfirmGuardrail)
        if confirm is None:
            return False
        try:
            return self._cond(confirm.threshold).test(variables)
        except CelError as exc:
            log.warning("confirm threshold for %s failed: %s", name, exc)
            return True  # when in doubt, ask

    def _case(self, name: str, args: dict[str, Any], facts: dict[str, Any], forced: tuple[str, str] | None) -> str:
        if self._reviewer is None:
            return ""
        # Which review case applies (without asking): part of the decision the write re-checks.
        return self._reviewer.case_id(phase="before", tool=name, args=args, facts=facts, forced=forced) or ""

    def _decide_and_run(
        self, *, name: str, args: dict[str, Any], spec_write: bool, call_id: str, user_id: str | None,
        actor: str, thread_id: str | None, conversation: Mapping[str, Any], audit_args: dict[str, Any],
        base: dict[str, Any], again: Callable[[Mapping[str, Any]], ToolOutcome], notice: str,
    ) -> ToolOutcome | StaleDecisionError:
        """Decide on fresh facts, ask for consent, then write with the decision re-checked in its transaction."""
        facts = self._domain.facts(name, args, user_id=user_id, conversation=conversation,
                                   conversation_id=thread_id)
        facts[INPUT_RISK_KEY] = input_risk_fact(conversation)  # the input guard's risk, for every rule
        variables = {"args": args, "facts": facts}
        decisions: list[dict[str, Any]] = []
        origin = {"thread_id": thread_id, "tool_call_id": call_id}

        # 1. pre-tool
        verdict = self._pre_tool(name, variables)
        forced: tuple[str, str] | None = None
        if verdict.action == "error":
            return self._deny(name, verdict.rule, verdict.message, verdict.detail, thread_id, actor, base, audit_args)
        if verdict.action == "deny":
            return self._deny(name, verdict.rule, verdict.message, "", thread_id, actor, base, audit_args)
        if verdict.action == "escalate":
            forced = (verdict.rule, verdict.message)
        if verdict.action != "none":
            decisions.append({**base, "guardrail": "pre-tool", "action": verdict.action,
                              **({"rule": verdict.rule} if verdict.rule else {})})

        # 2. idempotency lookup (a read; the claim comes after consent)
        idem: IdempotencyGuardrail | None = self._policy.guardrail(name, IdempotencyGuardrail)
        ttl = idem.ttl if idem else _REPLAY_TTL
        # The request (tool, customer, key fields) and the state it acts on: a reconnect that
        # repeats a completed request on the state it left behind is deduplicated, while the
        # same request on a state that changed since (A->B, B->A, A->B) is a new call.
        request = idempotency_key(name, user_id, args, idem.key_fields) if idem else None
        pre_state = self._domain.state_token(name, args, user_id=user_id) if (request or spec_write) else ""
        key = f"{request}@{pre_state}" if request else None
        if key is None and (spec_write or self._policy.escalations_for(name, "after")):
            # One key per call: the node is re-run when a reviewer answers, or after a crash.
            key = f"{name}:call:{thread_id}:{call_id}"
        if key is not None:
            prefix = f"{request}@" if request else None
            claims = self._idem.open_claims(key=key, prefix=prefix)
            unknown = self._settle_unknown([c for c in claims if self._idem.unsettled(c)], request, ttl, pre_state)
            if unknown is not None:
                return self._finish("unknown", unknown, thread_id, actor, name, base, audit_args,
                                    event="tool.unknown")
            if any(not self._idem.unsettled(c) for c in claims):  # a live duplicate is running: wait for it
                wait = idem.wait_timeout if idem else 30.0
                cached = self._idem.await_in_flight(key, prefix=prefix, wait_timeout=wait)
            else:
                cached = self._idem.lookup(key)
            if cached is not None:
                if cached.get("_origin") != origin:
                    return self._deduplicated(name, cached, thread_id, actor, base, audit_args, key)
                # This node executed the call before an interrupt and is being re-run:
                # go straight to the post-tool review with the stored result.
                content = {k: v for k, v in cached.items() if not k.startswith("_")}
                return self._review_after(
                    name, args, facts, content, thread_id, actor, call_id, again,
                    ToolOutcome(status=str(content.get("status")), content=content),
                )
            latest = self._idem.lookup(request) if request else None
            if latest is not None and latest.get("_post_state") == pre_state:
                return self._deduplicated(name, latest, thread_id, actor, base, audit_args, key)

        # 3. escalation before the call (a pre-tool `escalate` rule, or a before-phase rule)
        case = self._case(name, args, facts, forced) if spec_write else ""  # re-checked by the write
        reviewed = False
        if self._reviewer is not None:
            decision = self._reviewer(
                phase="before", tool=name, args=args, facts=facts, result=None,
                thread_id=thread_id, actor=actor, call_id=call_id, forced=forced,
            )
            if decision is not None:
                reviewed = True
                decisions.append({**base, "guardrail": "hitl", "action": decision.action,
                                  "reviewer": decision.reviewer})
                if decision.action == "reject":
                    return self._rejected(name, decision, thread_id, actor, base, audit_args)
                if decision.action == "edit" and decision.args is not None:
                    return again(decision.args)
        elif forced is not None:
            return self._deny(name, forced[0], forced[1], "no reviewer configured", thread_id,
                              actor, base, audit_args)

        # 4. confirm gate
        confirm: ConfirmGuardrail | None = self._policy.guardrail(name, ConfirmGuardrail)
        needed = self._confirm_needed(name, variables)
        # Consent binds this thread's call (its id is the graph's, unique in the thread) and
        # the state version it was priced on: it cannot confirm a sibling or a later call.
        digest = call_hash(name, args, facts, _binding(pre_state, thread_id, call_id))
        confirmed_by: str | None = None
        if needed and confirm is not None:
            answer = self._confirm_gate(
                name=name, args=args, shown=audit_args, facts=facts, confirm=confirm, variables=variables,
                thread_id=thread_id, actor=actor, call_id=call_id, decisions=decisions, digest=digest,
                notice=notice,
            )
            if answer != "confirm":
                return self._finish(
                    "declined",
                    {"status": "declined_by_user",
                     "message": "The customer did not confirm; nothing was executed."},
                    thread_id, actor, name, {**base, "guardrail": "confirm"}, audit_args,
                    event="confirm.declined",
                )
            confirmed_by = actor
            decisions.append({**base, "guardrail": "confirm", "action": "confirmed"})

        # 5. atomic claim, then resilience around the tool, the decision re-checked in its transaction
        token = ""
        if key is not None:
            try:
                claim = self._idem.claim(
                    key, tool=name, user_id=user_id, wait_timeout=idem.wait_timeout if idem else 30.0,
                    reconcile=self._domain.reconcile, ttl=ttl,
                )
            except IdempotencyTimeoutError:
                return self._finish(
                    "error", {"status": "error", "error": "An identical request is still running."},
                    thread_id, actor, name, base, audit_args,
                )
            except self._domain.error_type:
                return self._finish("unknown", dict(_UNKNOWN), thread_id, actor, name, base, audit_args,
                                    event="tool.unknown")
            if not claim.owned:
                return self._deduplicated(name, claim.result or {}, thread_id, actor, base, audit_args, key)
            token = claim.token

        backend_key = write_key(key, token) if key and token else key
        authorisation = _Authorisation(
            guard=self, tool=name, args=args, verdict=verdict, case=case, confirm_needed=needed,
            digest=digest if (confirmed_by or reviewed) else "", thread_id=thread_id, user_id=user_id,
            conversation=conversation, actor=actor, call_id=call_id, claim_key=key or "", claim_owner=token,
            backend_key=backend_key,
            audit_meta={**base, "confirmed_by": confirmed_by, "idempotency_key": key}, audit_args=audit_args,
        )
        resilience: ResilienceGuardrail | None = self._policy.guardrail(name, ResilienceGuardrail)
        try:
            result = self._execute(name, args, backend_key, resilience, authorisation if spec_write else None)
        except StaleDecisionError as exc:
            if token and key:
                self._idem.release(key, token)
            self._audit.append(
                "guardrail.revalidated", actor=actor, thread_id=thread_id, tool=name,
                payload={**base, "reason": exc.reason, "args": audit_args},
            )
            return exc
        except ServiceUnavailableError as exc:
            settled = self._settle_attempt(key, token, backend_key, spec_write, ttl)
            if settled is None:
                fallback = resilience.fallback_message if resilience else "The service is unavailable."
                return self._finish(
                    "unavailable", {"status": "unavailable", "message": fallback,
                                    "executed": False},
                    thread_id, actor, name, {**base, "guardrail": "resilience", "error": str(exc)},
                    audit_args, event="tool.unavailable",
                )
            if settled.get("status") == "unknown":
                return self._finish("unknown", settled, thread_id, actor, name,
                                    {**base, "guardrail": "resilience", "error": str(exc)}, audit_args,
                                    event="tool.unknown")
            result = settled  # the timed-out attempt did commit: report it, never run it again
        except Exception as exc:
            if token and key:
                self._idem.release(key, token)
            if isinstance(exc, self._domain.error_type):
                return self._finish(
                    "error", {"status": "error", "error": str(exc)}, thread_id, actor, name,
                    base, audit_args,
                )
            log.exception("tool %s crashed", name)
            return self._finish(
                "error", {"status": "error", "error": f"internal error ({type(exc).__name__})"},
                thread_id, actor, name, base, audit_args,
            )

        if authorisation.recorded:
            content = authorisation.content
            decisions.extend(authorisation.scan_decisions)
        else:
            content = result if isinstance(result, dict) else {"status": "ok", "result": result}
            content = {"status": content.get("status", "ok"), **content}
            if self._scan_result is not None:
                content, scan_decisions = self._scan_tool_result(content, thread_id)
                decisions.extend(scan_decisions)
        content = {k: v for k, v in content.items() if not k.startswith("_")}
        if token and key:
            post_state = self._domain.state_token(name, args, user_id=user_id) if request else ""
            stored = {**content, "_origin": origin, "_post_state": post_state}
            # "Latest completion" first, while our claim still reads in progress: a duplicate that
            # sees the new state waits on the claim and then finds this result, never a gap.
            if request and idem:
                self._idem.remember(request, stored, ttl=idem.ttl)
            self._idem.complete(key, token, stored, ttl=ttl)
        outcome = self._finish(
            str(content["status"]), content, thread_id, actor, name,
            {**base, "confirmed_by": confirmed_by, "idempotency_key": key}, audit_args,
            event="tool.executed", decisions=decisions, scanned=True,
            audited=authorisation.recorded,
        )
        return self._review_after(name, args, facts, content, thread_id, actor, call_id, again,
                                  outcome)

    def _settle_unknown(
        self, claims: list[dict[str, Any]], request: str | None, ttl: float, state: str
    ) -> dict[str, Any] | None:
        """Reconcile earlier attempts whose outcome is unknown; None once all are settled."""
        for row in claims:
            try:
                done = self._domain.reconcile(write_key(str(row["key"]), str(row["owner"])))
            except self._domain.error_type:
                return dict(_UNKNOWN)
            self._idem.settle(str(row["key"]), str(row["owner"]), result=done, ttl=ttl)
            if done is not None and request is not None:
                clean = {k: v for k, v in done.items() if not k.startswith("_")}
                # The late write is the latest completion of the request: a retry on the state it
                # left behind (the state now) is a duplicate of it, not a new request.
                self._idem.remember(request, {**clean, "_post_state": state}, ttl=ttl)
        return None

    def _settle_attempt(
        self, key: str | None, token: str, backend_key: str | None, write: bool, ttl: float
    ) -> dict[str, Any] | None:
        """After the attempts failed or timed out: the committed result, None if nothing ran, or unknown."""
        if not (write and key and token and backend_key):
            if token and key:
                self._idem.release(key, token)
            return None
        try:
            done = self._domain.reconcile(backend_key)
        except self._domain.error_type:
            # Still running somewhere: keep the claim unknown; the next attempt reconciles first.
            self._idem.mark_unknown(key, token)
            return dict(_UNKNOWN)
        if done is None:
            self._idem.release(key, token)
        return done

    def _recovered(
        self, name: str, recorded: dict[str, Any], thread_id: str | None, actor: str,
        base: dict[str, Any], args: Mapping[str, Any],
    ) -> ToolOutcome:
        claim_key, owner = str(recorded.get("_claim_key", "")), str(recorded.get("_owner", ""))
        content = {k: v for k, v in recorded.items() if not k.startswith("_")}
        if claim_key and owner:
            self._idem.settle(claim_key, owner, result=content, ttl=_REPLAY_TTL)
        return self._finish(
            str(content.get("status", "ok")), content, thread_id, actor, name,
            {**base, "recovered": True}, args, event="tool.recovered", scanned=True,
        )

    def _review_after(
        self, name: str, args: dict[str, Any], facts: dict[str, Any], content: dict[str, Any],
        thread_id: str | None, actor: str, call_id: str,
        again: Callable[[Mapping[str, Any]], ToolOutcome], outcome: ToolOutcome,
    ) -> ToolOutcome:
        if self._reviewer is None:
            return outcome
        decision = self._reviewer(
            phase="after", tool=name, args=args, facts=facts, result=content,
            thread_id=thread_id, actor=actor, call_id=call_id, forced=None,
        )
        if decision is None or decision.action == "approve":
            return outcome
        base = {"tool": name, "tool_call_id": call_id}
        if decision.action == "edit" and decision.args is not None:
            return again(decision.args)
        return self._rejected(name, decision, thread_id, actor, base, self._redact(args))

    # -- pieces ---------------------------------------------------------------------
    def _confirm_gate(
        self, *, name: str, args: dict[str, Any], shown: dict[str, Any], facts: dict[str, Any],
        confirm: ConfirmGuardrail, variables: dict[str, Any], thread_id: str | None, actor: str,
        call_id: str, decisions: list[dict[str, Any]], digest: str, notice: str = "",
    ) -> str:
        quote = facts.get("quote") if isinstance(facts.get("quote"), dict) else {}
        payload = {
            "type": "confirm",
            "tool": name,
            "tool_call_id": call_id,
            "args": shown,
            "amount_usd": (quote or {}).get("amount_usd"),
            "direction": (quote or {}).get("direction"),
            "message": render_template(confirm.message, variables),
            "args_hash": digest,
        }
        # Each loop iteration is a separate interrupt; on resume LangGraph replays the
        # earlier answers in order, so a refused answer re-asks instead of executing.
        while True:
            try:
                raw = interrupt({**payload, "notice": notice} if notice else payload)
            except GraphInterrupt:
                self._audit.append(
                    "confirm.requested", actor=actor, thread_id=thread_id, tool=name,
                    payload={"tool_call_id": call_id, "args": shown,
                             "amount_usd": payload["amount_usd"], "args_hash": digest,
                             "decisions": decisions},
                )
                raise
            answer = parse_confirm_resume(raw)
            if answer.action == "cancel":
                return "cancel"
            if answer.action == "confirm" and answer.args_hash == digest:
                self._audit.append(
                    "confirm.accepted", actor=actor, thread_id=thread_id, tool=name,
                    payload={"tool_call_id": call_id, "args_hash": digest,
                             "amount_usd": payload["amount_usd"]},
                )
                return "confirm"
            reason = answer.reason or "the request or its price changed since it was shown"
            self._audit.append(
                "confirm.rejected", actor=actor, thread_id=thread_id, tool=name,
                payload={"tool_call_id": call_id, "args_hash": digest, "reason": reason},
            )
            notice = f"Confirmation not accepted ({reason}); please confirm this exact request."

    def _execute(
        self, name: str, args: dict[str, Any], key: str | None,
        resilience: ResilienceGuardrail | None, authorisation: _Authorisation | None,
    ) -> Any:
        def invoke() -> Any:
            return self._domain.execute(name, args, idempotency_key=key, guard=authorisation)

        if resilience is None:
            return invoke()
        caller = ResilientCaller(
            config=resilience, breaker=self._breakers.get(name, resilience),
            non_retryable=(self._domain.error_type, StaleDecisionError),
        )
        return caller.call(invoke)

    def _scan_tool_result(
        self, content: dict[str, Any], thread_id: str | None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        assert self._scan_result is not None
        text = json.dumps(content, default=str)
        scanned, decisions = self._scan_result(text, thread_id)
        if scanned == text:
            return content, decisions
        try:
            parsed = json.loads(scanned)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed, decisions
        return {"status": content.get("status", "ok"), "result": scanned}, decisions

    def _deny(
        self, name: str, rule: str, message: str, detail: str, thread_id: str | None,
        actor: str, base: dict[str, Any], args: Mapping[str, Any],
    ) -> ToolOutcome:
        content = {"status": "denied", "guardrail": "pre-tool", "rule": rule, "message": message}
        return self._finish(
            "denied", content, thread_id, actor, name,
            {**base, "guardrail": "pre-tool", "rule": rule, **({"detail": detail} if detail else {})},
            args, event="guardrail.denied",
        )

    def _rejected(
        self, name: str, decision: ReviewDecision, thread_id: str | None, actor: str,
        base: dict[str, Any], args: Mapping[str, Any],
    ) -> ToolOutcome:
        content = {
            "status": "rejected_by_reviewer",
            "message": decision.message or "A reviewer rejected this request.",
        }
        return self._finish(
            "rejected", content, thread_id, actor, name,
            {**base, "guardrail": "hitl", "reviewer": decision.reviewer}, args,
            event="tool.rejected",
        )

    def _deduplicated(
        self, name: str, cached: dict[str, Any], thread_id: str | None, actor: str,
        base: dict[str, Any], args: Mapping[str, Any], key: str,
    ) -> ToolOutcome:
        kept = {k: v for k, v in cached.items() if not k.startswith("_")}
        content = {**kept, "status": "deduplicated", "original_status": cached.get("status")}
        return self._finish(
            "deduplicated", content, thread_id, actor, name,
            {**base, "guardrail": "idempotency", "idempotency_key": key}, args,
            event="tool.deduplicated",
        )

    def _finish(
        self, status: str, content: dict[str, Any], thread_id: str | None, actor: str,
        tool: str, meta: dict[str, Any], args: Mapping[str, Any], *, event: str | None = None,
        decisions: list[dict[str, Any]] | None = None, scanned: bool = False, audited: bool = False,
    ) -> ToolOutcome:
        event = event or f"tool.{status}"
        if not scanned and status in {"error", "invalid"}:
            # A backend error can echo an argument that code resolved from the vault (a
            # passenger's name): mask it like any text going to the model. Denials and
            # reviewer messages are written by the policy and the reviewer, not echoed.
            content = self._redact(content)
        decision = {**{k: v for k, v in meta.items() if v is not None}, "action": status}
        record_tool(tool, status, content)
        if not audited:  # a guarded write audits itself, in its own transaction
            self._audit.append(
                event, actor=actor, thread_id=thread_id, tool=tool,
                payload={**decision, "args": dict(args),
                         "result": content if self._masked_world else self._redact(content)},
            )
        return ToolOutcome(
            status=status, content=content, decisions=(*(decisions or []), decision),
        )
