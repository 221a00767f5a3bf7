"""The steps of the tool-guard chain, one class per guardrail, in policy order.

Each step implements :class:`nodes.guardrails.chain.ToolStep` (one method, ``wrap``). They
share two helpers built once per node: :class:`Decider` (what the policy says about a call:
pre-tool verdict, confirm requirement, review case; the write's transaction asks it again) and
:class:`Outcomes` (how an answer is audited, counted and shown). :class:`RunTool` is the
innermost handler: resilience around the domain's write, then the result recorded.

Everything a step does before an ``interrupt()`` (review, confirm gate) is a pure read:
LangGraph re-runs the node from its first line on every resume.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from langgraph.errors import GraphInterrupt
from langgraph.types import interrupt

from graph.cel import CelError, render_template
from graph.domain import Domain, StaleDecisionError, WriteGuard
from graph.interrupts import ConfirmRequest, confirm_request
from graph.policy import ConfirmGuardrail, IdempotencyGuardrail, Policy, PreToolGuardrail, ResilienceGuardrail
from nodes.audit import AuditLog
from nodes.guardrails.chain import Handler, PreVerdict, ToolCallRequest, ToolOutcome
from nodes.guardrails.confirm import call_hash, parse_confirm_resume
from nodes.guardrails.idempotency import IdempotencyStore, IdempotencyTimeoutError, idempotency_key, write_key
from nodes.guardrails.resilience import BreakerRegistry, ResilientCaller, ServiceUnavailableError
from nodes.metrics import record_tool

if TYPE_CHECKING:
    from nodes.tool_guard import ReviewDecision, Reviewer

__all__ = [
    "REPLAY_TTL",
    "UNKNOWN_OUTCOME",
    "ConfirmGate",
    "Decider",
    "IdempotencyClaim",
    "IdempotencyLookup",
    "Outcomes",
    "PostToolReview",
    "PreToolChecks",
    "PreToolReview",
    "RecordingGuard",
    "RunTool",
    "ScanContent",
    "binding",
    "scan_content",
]

log = logging.getLogger(__name__)

Redactor = Callable[[Any], Any]
#: How long a reviewed read's result is kept for the node's re-run.
REPLAY_TTL = 7 * 86400.0
#: What the customer is told when a write may or may not have happened.
UNKNOWN_OUTCOME = {
    "status": "unknown",
    "executed": "unknown",
    "message": "We could not confirm whether this request went through. It will not be repeated "
    "automatically; it is being checked, and asking again will report what happened.",
}


def binding(state: str, thread_id: str | None, call_id: str) -> str:
    """Return what consent is bound to besides the call: the state version, the thread and the call id."""
    return f"{state}|{thread_id or ''}|{call_id}"


class Decider:
    """What the policy decides about one call, asked by the steps and again inside the write."""

    def __init__(self, *, policy: Policy, reviewer: Reviewer | None) -> None:
        self._policy, self._reviewer = policy, reviewer

    def pre_tool(self, name: str, variables: Mapping[str, Any]) -> PreVerdict:
        """Return the first pre-tool check that fires (``error`` when one cannot be evaluated)."""
        pre: PreToolGuardrail | None = self._policy.guardrail(name, PreToolGuardrail)
        if pre is None:
            return PreVerdict(action="none")
        for check in pre.checks:
            try:
                hit = self._policy.condition(check.when).test(variables)
            except CelError as exc:
                # Fail closed: a rule that cannot be evaluated denies the call.
                log.warning("pre-tool %s/%s failed to evaluate: %s", name, check.id, exc)
                return PreVerdict(action="error", rule=check.id, message="This request could not be verified.",
                                  detail=f"rule_error: {exc}")
            if hit:
                return PreVerdict(action=check.action, rule=check.id,
                                  message=render_template(check.message, variables))
        return PreVerdict(action="allow")

    def confirm_needed(self, name: str, variables: Mapping[str, Any]) -> bool:
        """Return whether the customer must confirm this call (True when the threshold cannot be evaluated)."""
        confirm: ConfirmGuardrail | None = self._policy.guardrail(name, ConfirmGuardrail)
        if confirm is None:
            return False
        try:
            return self._policy.condition(confirm.threshold).test(variables)
        except CelError as exc:
            log.warning("confirm threshold for %s failed: %s", name, exc)
            return True  # when in doubt, ask

    def review_case(
        self, name: str, args: dict[str, Any], facts: dict[str, Any], forced: tuple[str, str] | None,
    ) -> str:
        """Return which review case applies before the call (without asking anyone), or ''."""
        if self._reviewer is None:
            return ""
        return self._reviewer.case_id(phase="before", tool=name, args=args, facts=facts, forced=forced) or ""


class Outcomes:
    """Turn an answer into a :class:`ToolOutcome`: masked, counted and audited."""

    def __init__(self, *, audit: AuditLog, redact: Redactor, masked_world: bool) -> None:
        self._audit, self._redact, self._masked_world = audit, redact, masked_world

    def finish(
        self, status: str, content: dict[str, Any], request: ToolCallRequest | None, *, tool: str = "",
        thread_id: str | None = None, actor: str = "", meta: dict[str, Any] | None = None,
        args: Mapping[str, Any] | None = None, event: str | None = None,
        decisions: list[dict[str, Any]] | None = None, scanned: bool = False, audited: bool = False,
    ) -> ToolOutcome:
        """Return the outcome and audit it (``event``, default ``tool.<status>``).

        The call's tool, thread, actor, decision record and shown arguments come from
        ``request`` unless given.
        """
        if request is not None:
            tool, thread_id, actor = tool or request.name, thread_id or request.thread_id, actor or request.actor
            meta = request.base if meta is None else meta
            args = request.audit_args if args is None else args
        event = event or f"tool.{status}"
        if not scanned and status in {"error", "invalid"}:
            # A backend error can echo an argument that code resolved from the vault (a
            # passenger's name): mask it like any text going to the model. Denials and
            # reviewer messages are written by the policy and the reviewer, not echoed.
            content = self._redact(content)
        decision = {**{k: v for k, v in (meta or {}).items() if v is not None}, "action": status}
        record_tool(tool, status, content)
        if not audited:  # a guarded write audits itself, in its own transaction
            self._audit.append(
                event, actor=actor, thread_id=thread_id, tool=tool,
                payload={**decision, "args": dict(args or {}),
                         "result": content if self._masked_world else self._redact(content)},
            )
        return ToolOutcome(status=status, content=content, decisions=(*(decisions or []), decision))

    def deny(self, request: ToolCallRequest, rule: str, message: str, detail: str) -> ToolOutcome:
        """Return a pre-tool denial."""
        content = {"status": "denied", "guardrail": "pre-tool", "rule": rule, "message": message}
        return self.finish(
            "denied", content, request,
            meta={**request.base, "guardrail": "pre-tool", "rule": rule, **({"detail": detail} if detail else {})},
            event="guardrail.denied",
        )

    def rejected(self, request: ToolCallRequest, decision: ReviewDecision, args: Mapping[str, Any]) -> ToolOutcome:
        """Return a reviewer's rejection."""
        content = {
            "status": "rejected_by_reviewer",
            "message": decision.message or "A reviewer rejected this request.",
        }
        return self.finish(
            "rejected", content, request, meta={**request.base, "guardrail": "hitl", "reviewer": decision.reviewer},
            args=args, event="tool.rejected",
        )

    def deduplicated(self, request: ToolCallRequest, cached: dict[str, Any], key: str) -> ToolOutcome:
        """Return the stored result of the same request, marked as a duplicate."""
        kept = {k: v for k, v in cached.items() if not k.startswith("_")}
        content = {**kept, "status": "deduplicated", "original_status": cached.get("status")}
        return self.finish(
            "deduplicated", content, request,
            meta={**request.base, "guardrail": "idempotency", "idempotency_key": key}, event="tool.deduplicated",
        )

    def edited(self, args: dict[str, Any], decision: ReviewDecision,
               again: Callable[[Mapping[str, Any]], ToolOutcome]) -> ToolOutcome:
        """Run the call with the reviewer's edit merged over its arguments; say what changed.

        The edit's keys replace the case's (a reviewer sends only what they change). The
        result carries ``review``: who changed what and their comment, and the arguments the
        tool ran with, so the answer can give the customer the figures that were used.
        """
        merged = {**args, **(decision.args or {})}
        outcome = again(merged)
        changed = {k: {"from": args.get(k), "to": v} for k, v in merged.items() if args.get(k) != v}
        note = {"decision": "edit", "reviewer": decision.reviewer, "comment": decision.message,
                "changed": self._redact(changed), "args": self._redact(merged)}
        return ToolOutcome(status=outcome.status, content={**outcome.content, "review": note},
                           decisions=outcome.decisions)

    @staticmethod
    def approved(decision: ReviewDecision, outcome: ToolOutcome) -> ToolOutcome:
        """Carry the approval's words for the customer (the policy's notice, the reviewer's comment)."""
        if not (decision.notice or decision.message):
            return outcome
        note = {"decision": "approve", "reviewer": decision.reviewer, "comment": decision.message,
                "case": decision.case, "notice": decision.notice}
        return ToolOutcome(status=outcome.status, content={**outcome.content, "review": note},
                           decisions=outcome.decisions)

    @property
    def masked_world(self) -> bool:
        """Return True when tool results reach this point already masked by the tool-result PII guard."""
        return self._masked_world

    def redact(self, value: Any) -> Any:
        """Mask ``value`` as everything shown to the model or a reviewer is."""
        return self._redact(value)


class PostToolReview:
    """``hitl.escalate`` with ``phase: after``: a reviewer looks at a read's result before the model does.

    Outermost, so it sees the result whether the tool ran now or earlier in this thread (the
    node re-run after the reviewer answered finds it stored).
    """

    def __init__(self, *, reviewer: Reviewer | None, outcomes: Outcomes) -> None:
        self._reviewer, self._outcomes = reviewer, outcomes

    def wrap(self, request: ToolCallRequest, call_next: Handler) -> ToolOutcome | StaleDecisionError:
        """Run the chain; when the tool ran, let an after-phase rule send its result to a reviewer."""
        outcome = call_next(request)
        if isinstance(outcome, StaleDecisionError) or not request.ran or self._reviewer is None:
            return outcome
        r = request
        decision = self._reviewer(
            phase="after", tool=r.name, args=r.args, facts=r.facts, result=outcome.content,
            thread_id=r.thread_id, actor=r.actor, call_id=r.call_id, forced=None,
            result_masked=self._outcomes.masked_world,
        )
        if decision is None:
            return outcome
        if decision.action == "approve":
            return self._outcomes.approved(decision, outcome)
        if decision.action == "edit" and decision.args is not None:
            return self._outcomes.edited(r.args, decision, r.again)
        return self._outcomes.rejected(r, decision, self._outcomes.redact(r.args))


class PreToolChecks:
    """``guardrail.pre-tool``: the first check that fires denies, escalates or allows."""

    def __init__(self, *, decider: Decider, outcomes: Outcomes) -> None:
        self._decider, self._outcomes = decider, outcomes

    def wrap(self, request: ToolCallRequest, call_next: Handler) -> ToolOutcome | StaleDecisionError:
        """Deny here, or pass on (an ``escalate`` verdict forces a review further on)."""
        verdict = request.verdict = self._decider.pre_tool(request.name, request.variables)
        if verdict.action == "error":
            return self._outcomes.deny(request, verdict.rule, verdict.message, verdict.detail)
        if verdict.action == "deny":
            return self._outcomes.deny(request, verdict.rule, verdict.message, "")
        if verdict.action == "escalate":
            request.forced = (verdict.rule, verdict.message)
        if verdict.action != "none":
            request.decisions.append({**request.base, "guardrail": "pre-tool", "action": verdict.action,
                                      **({"rule": verdict.rule} if verdict.rule else {})})
        return call_next(request)


class IdempotencyLookup:
    """``guardrail.idempotency``, the read: a completed duplicate answers at once (the claim comes after consent).

    The request (tool, customer, key fields) and the state it acts on make the key: a
    reconnect that repeats a completed request on the state it left behind is deduplicated,
    while the same request on a state that changed since (A->B, B->A, A->B) is a new call.
    """

    def __init__(self, *, policy: Policy, domain: Domain, store: IdempotencyStore, outcomes: Outcomes) -> None:
        self._policy, self._domain, self._store, self._outcomes = policy, domain, store, outcomes

    def wrap(self, request: ToolCallRequest, call_next: Handler) -> ToolOutcome | StaleDecisionError:
        """Answer with the stored result of a duplicate, or pass on with the key filled in."""
        r, store = request, self._store
        idem: IdempotencyGuardrail | None = self._policy.guardrail(r.name, IdempotencyGuardrail)
        r.idem, r.ttl = idem, idem.ttl if idem else REPLAY_TTL
        r.request_key = idempotency_key(r.name, r.user_id, r.args, idem.key_fields) if idem else None
        r.pre_state = (self._domain.state_token(r.name, r.args, user_id=r.user_id)
                       if (r.request_key or r.write) else "")
        r.key = f"{r.request_key}@{r.pre_state}" if r.request_key else None
        if r.key is None and (r.write or self._policy.escalations_for(r.name, "after")):
            # One key per call: the node is re-run when a reviewer answers, or after a crash.
            r.key = f"{r.name}:call:{r.thread_id}:{r.call_id}"
        if r.key is None:
            return call_next(r)
        prefix = f"{r.request_key}@" if r.request_key else None
        claims = store.open_claims(key=r.key, prefix=prefix)
        unknown = self._settle_unknown([c for c in claims if store.unsettled(c)], r)
        if unknown is not None:
            return self._outcomes.finish("unknown", unknown, r, event="tool.unknown")
        if any(not store.unsettled(c) for c in claims):  # a live duplicate is running: wait for it
            cached = store.await_in_flight(r.key, prefix=prefix, wait_timeout=idem.wait_timeout if idem else 30.0)
        else:
            cached = store.lookup(r.key)
        if cached is not None:
            if cached.get("_origin") != r.origin:
                return self._outcomes.deduplicated(r, cached, r.key)
            # This node executed the call before an interrupt and is being re-run: the
            # post-tool review gets the stored result.
            content = {k: v for k, v in cached.items() if not k.startswith("_")}
            r.ran = True
            return ToolOutcome(status=str(content.get("status")), content=content)
        latest = store.lookup(r.request_key) if r.request_key else None
        if latest is not None and latest.get("_post_state") == r.pre_state:
            return self._outcomes.deduplicated(r, latest, r.key)
        return call_next(r)

    def _settle_unknown(self, claims: list[dict[str, Any]], r: ToolCallRequest) -> dict[str, Any] | None:
        """Reconcile earlier attempts whose outcome is unknown; None once all are settled."""
        for row in claims:
            try:
                done = self._domain.reconcile(write_key(str(row["key"]), str(row["owner"])))
            except self._domain.error_type:
                return dict(UNKNOWN_OUTCOME)
            self._store.settle(str(row["key"]), str(row["owner"]), result=done, ttl=r.ttl)
            if done is not None and r.request_key is not None:
                clean = {k: v for k, v in done.items() if not k.startswith("_")}
                # The late write is the latest completion of the request: a retry on the state it
                # left behind (the state now) is a duplicate of it, not a new request.
                self._store.remember(r.request_key, {**clean, "_post_state": r.pre_state}, ttl=r.ttl)
        return None


class PreToolReview:
    """``hitl.escalate`` with ``phase: before`` (or a pre-tool ``escalate``): a reviewer decides first."""

    def __init__(self, *, decider: Decider, reviewer: Reviewer | None, outcomes: Outcomes) -> None:
        self._decider, self._reviewer, self._outcomes = decider, reviewer, outcomes

    def wrap(self, request: ToolCallRequest, call_next: Handler) -> ToolOutcome | StaleDecisionError:
        """Ask a reviewer when a rule says so; reject, run the edit instead, or pass on."""
        r = request
        # Which case applies is part of the decision the write re-checks.
        r.case = self._decider.review_case(r.name, r.args, r.facts, r.forced) if r.write else ""
        if self._reviewer is not None:
            decision = self._reviewer(
                phase="before", tool=r.name, args=r.args, facts=r.facts, result=None,
                thread_id=r.thread_id, actor=r.actor, call_id=r.call_id, forced=r.forced,
            )
            if decision is not None:
                r.reviewed = True
                r.decisions.append({**r.base, "guardrail": "hitl", "action": decision.action,
                                    "reviewer": decision.reviewer})
                if decision.action == "reject":
                    return self._outcomes.rejected(r, decision, r.audit_args)
                if decision.action == "edit" and decision.args is not None:
                    return self._outcomes.edited(r.args, decision, r.again)
        elif r.forced is not None:
            return self._outcomes.deny(r, r.forced[0], r.forced[1], "no reviewer configured")
        return call_next(r)


class ConfirmGate:
    """``guardrail.confirm``: the customer consents to this exact call (bound to its hash)."""

    def __init__(
        self, *, policy: Policy, domain: Domain, decider: Decider, audit: AuditLog, outcomes: Outcomes,
    ) -> None:
        self._policy, self._domain, self._decider = policy, domain, decider
        self._audit, self._outcomes = audit, outcomes

    def wrap(self, request: ToolCallRequest, call_next: Handler) -> ToolOutcome | StaleDecisionError:
        """Ask for consent when the threshold holds; pass on only a confirmed call."""
        r = request
        confirm: ConfirmGuardrail | None = self._policy.guardrail(r.name, ConfirmGuardrail)
        r.confirm_needed = self._decider.confirm_needed(r.name, r.variables)
        # Consent binds this thread's call (its id is the graph's, unique in the thread) and
        # the state version it was priced on: it cannot confirm a sibling or a later call.
        r.digest = call_hash(r.name, r.args, r.facts, binding(r.pre_state, r.thread_id, r.call_id))
        if r.confirm_needed and confirm is not None:
            if self._ask(r, confirm) != "confirm":
                return self._outcomes.finish(
                    "declined",
                    {"status": "declined_by_user", "message": "The customer did not confirm; nothing was executed."},
                    r, meta={**r.base, "guardrail": "confirm"}, event="confirm.declined",
                )
            r.confirmed_by = r.actor
            r.decisions.append({**r.base, "guardrail": "confirm", "action": "confirmed"})
        return call_next(r)

    def _ask(self, r: ToolCallRequest, confirm: ConfirmGuardrail) -> Literal["confirm", "cancel"]:
        payload = confirm_request(
            tool=r.name, call_id=r.call_id, args=r.audit_args,
            # What the customer reads (the domain's words): no tool name, JSON or payment id.
            summary=self._domain.describe_call(r.name, r.audit_args, r.facts),
            quote=r.facts.get("quote"), message=render_template(confirm.message, r.variables), digest=r.digest,
        )
        notice = r.notice
        # Each loop iteration is a separate interrupt; on resume LangGraph replays the
        # earlier answers in order, so a refused answer re-asks instead of executing.
        while True:
            shown: ConfirmRequest = {**payload, "notice": notice} if notice else payload
            try:
                raw = interrupt(shown)
            except GraphInterrupt:
                self._audit.append(
                    "confirm.requested", actor=r.actor, thread_id=r.thread_id, tool=r.name,
                    payload={"tool_call_id": r.call_id, "args": r.audit_args,
                             "amount_usd": payload["amount_usd"], "args_hash": r.digest,
                             "decisions": r.decisions},
                )
                raise
            answer = parse_confirm_resume(raw)
            if answer.action == "cancel":
                return "cancel"
            if answer.action == "confirm" and answer.args_hash == r.digest:
                self._audit.append(
                    "confirm.accepted", actor=r.actor, thread_id=r.thread_id, tool=r.name,
                    payload={"tool_call_id": r.call_id, "args_hash": r.digest, "amount_usd": payload["amount_usd"]},
                )
                return "confirm"
            reason = answer.reason or "the request or its price changed since it was shown"
            self._audit.append(
                "confirm.rejected", actor=r.actor, thread_id=r.thread_id, tool=r.name,
                payload={"tool_call_id": r.call_id, "args_hash": r.digest, "reason": reason},
            )
            notice = f"Confirmation not accepted ({reason}); please confirm this exact request."


class IdempotencyClaim:
    """``guardrail.idempotency``, the claim: after consent, one attempt at a time holds the key."""

    def __init__(self, *, domain: Domain, store: IdempotencyStore, outcomes: Outcomes) -> None:
        self._domain, self._store, self._outcomes = domain, store, outcomes

    def wrap(self, request: ToolCallRequest, call_next: Handler) -> ToolOutcome | StaleDecisionError:
        """Take the key (``token``) and pass on; a duplicate that got there first answers instead."""
        r = request
        if r.key is None:
            return call_next(r)
        try:
            claim = self._store.claim(
                r.key, tool=r.name, user_id=r.user_id, wait_timeout=r.idem.wait_timeout if r.idem else 30.0,
                reconcile=self._domain.reconcile, ttl=r.ttl,
            )
        except IdempotencyTimeoutError:
            return self._outcomes.finish(
                "error", {"status": "error", "error": "An identical request is still running."}, r,
            )
        except self._domain.error_type:
            return self._outcomes.finish("unknown", dict(UNKNOWN_OUTCOME), r, event="tool.unknown")
        if not claim.owned:
            return self._outcomes.deduplicated(r, claim.result or {}, r.key)
        r.token = claim.token
        return call_next(r)


#: The tool-result guard pipeline over a result (content, decisions).
ScanContent = Callable[[dict[str, Any], "str | None"], "tuple[dict[str, Any], list[dict[str, Any]]]"]


class RecordingGuard(WriteGuard, Protocol):
    """The write's re-check of the decision, as :class:`RunTool` reads it after the write."""

    #: True once the write recorded its outcome (and audit event) in its own transaction.
    recorded: bool
    #: The outcome as recorded (tool-result guards applied).
    content: dict[str, Any]
    #: The tool-result guards' decisions on it.
    scan_decisions: list[dict[str, Any]]


class RunTool:
    """``guardrail.resilience`` around the tool, then its result recorded: the innermost handler.

    The domain's write re-checks the decision in its own transaction (a refusal comes back as
    :class:`StaleDecisionError`, and the whole chain decides again on fresh facts).
    """

    def __init__(
        self, *, policy: Policy, domain: Domain, store: IdempotencyStore, breakers: BreakerRegistry,
        audit: AuditLog, outcomes: Outcomes, authorise: Callable[[ToolCallRequest, str | None], RecordingGuard],
        scan: ScanContent | None,
    ) -> None:
        self._policy, self._domain, self._store, self._breakers = policy, domain, store, breakers
        self._audit, self._outcomes, self._authorise, self._scan = audit, outcomes, authorise, scan

    def __call__(self, request: ToolCallRequest) -> ToolOutcome | StaleDecisionError:
        """Run the tool under the resilience policy; store and audit what it did."""
        r, store = request, self._store
        key, token = r.key, r.token
        backend_key = write_key(key, token) if key and token else key
        authorisation = self._authorise(r, backend_key)
        resilience: ResilienceGuardrail | None = self._policy.guardrail(r.name, ResilienceGuardrail)
        try:
            result = self._execute(r.name, r.args, backend_key, resilience, authorisation if r.write else None)
        except StaleDecisionError as exc:
            if token and key:
                store.release(key, token)
            self._audit.append(
                "guardrail.revalidated", actor=r.actor, thread_id=r.thread_id, tool=r.name,
                payload={**r.base, "reason": exc.reason, "args": r.audit_args},
            )
            return exc
        except ServiceUnavailableError as exc:
            settled = self._settle_attempt(r, backend_key)
            meta = {**r.base, "guardrail": "resilience", "error": str(exc)}
            if settled is None:
                fallback = resilience.fallback_message if resilience else "The service is unavailable."
                return self._outcomes.finish(
                    "unavailable", {"status": "unavailable", "message": fallback, "executed": False},
                    r, meta=meta, event="tool.unavailable",
                )
            if settled.get("status") == "unknown":
                return self._outcomes.finish("unknown", settled, r, meta=meta, event="tool.unknown")
            result = settled  # the timed-out attempt did commit: report it, never run it again
        except Exception as exc:
            if token and key:
                store.release(key, token)
            if isinstance(exc, self._domain.error_type):
                return self._outcomes.finish("error", {"status": "error", "error": str(exc)}, r)
            log.exception("tool %s crashed", r.name)
            return self._outcomes.finish(
                "error", {"status": "error", "error": f"internal error ({type(exc).__name__})"}, r,
            )

        if authorisation.recorded:
            content = authorisation.content
            r.decisions.extend(authorisation.scan_decisions)
        else:
            content = result if isinstance(result, dict) else {"status": "ok", "result": result}
            content = {"status": content.get("status", "ok"), **content}
            if self._scan is not None:
                content, scan_decisions = self._scan(content, r.thread_id)
                r.decisions.extend(scan_decisions)
        content = {k: v for k, v in content.items() if not k.startswith("_")}
        if token and key:
            post_state = self._domain.state_token(r.name, r.args, user_id=r.user_id) if r.request_key else ""
            stored = {**content, "_origin": r.origin, "_post_state": post_state}
            # "Latest completion" first, while our claim still reads in progress: a duplicate that
            # sees the new state waits on the claim and then finds this result, never a gap.
            if r.request_key and r.idem:
                store.remember(r.request_key, stored, ttl=r.idem.ttl)
            store.complete(key, token, stored, ttl=r.ttl)
        outcome = self._outcomes.finish(
            str(content["status"]), content, r,
            meta={**r.base, "confirmed_by": r.confirmed_by, "idempotency_key": key},
            event="tool.executed", decisions=r.decisions, scanned=True, audited=authorisation.recorded,
        )
        r.ran = True
        return outcome

    def _execute(
        self, name: str, args: dict[str, Any], key: str | None,
        resilience: ResilienceGuardrail | None, authorisation: WriteGuard | None,
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

    def _settle_attempt(self, r: ToolCallRequest, backend_key: str | None) -> dict[str, Any] | None:
        """After the attempts failed or timed out: the committed result, None if nothing ran, or unknown."""
        key, token = r.key, r.token
        if not (r.write and key and token and backend_key):
            if token and key:
                self._store.release(key, token)
            return None
        try:
            done = self._domain.reconcile(backend_key)
        except self._domain.error_type:
            # Still running somewhere: keep the claim unknown; the next attempt reconciles first.
            self._store.mark_unknown(key, token)
            return dict(UNKNOWN_OUTCOME)
        if done is None:
            self._store.release(key, token)
        return done


def scan_content(
    scan: Callable[[str, str | None], tuple[str, list[dict[str, Any]]]],
) -> ScanContent:
    """Return a scanner of result dicts from a scanner of text (the tool-result guard pipeline)."""

    def run(content: dict[str, Any], thread_id: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        text = json.dumps(content, default=str)
        scanned, decisions = scan(text, thread_id)
        if scanned == text:
            return content, decisions
        try:
            parsed = json.loads(scanned)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed, decisions
        return {"status": content.get("status", "ok"), "result": scanned}, decisions

    return run
