"""The application service: the one API the UI, the CLI and the tests drive.

It owns who may do what: a customer acts only on their own threads and answers only
their own confirm gates; resuming escalations is for reviewers (see ``graph.reviews``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command

from graph.builder import build_graph
from graph.context import AirlockContext
from graph.errors import AirlockError
from graph.reviews import REVIEWER_ROLE, StaleReviewError, signed_resume, sweeper_id
from graph.runtime import AirlockServices
from nodes.guardrails.canonical import InvalidArgumentsError, canonical_text, text_problem
from nodes.guardrails.confirm import parse_confirmation_text
from nodes.guardrails.stated import parse_choice_text

__all__ = [
    "AirlockApp",
    "NotAllowedError",
    "PendingInterrupt",
    "StaleReviewError",
    "TurnResult",
    "interrupt_text",
]

RECURSION_LIMIT = 80
# A hard cap on one customer message, for storage sanity; the policy's input guards (e.g. the
# prefilter's length rule) apply their own, stricter limits inside the graph.
MAX_MESSAGE_CHARS = 100_000


class NotAllowedError(AirlockError, PermissionError):
    """The caller may not act on this thread or interrupt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingInterrupt:
    """A paused gate: a confirm gate (the customer) or an escalation (a reviewer)."""

    id: str
    kind: str
    value: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnResult:
    """What a turn produced, for a UI.

    Attributes:
        invalid: Why the caller's input was refused before it reached the graph (empty when it
            was accepted); the thread is then exactly as it was.
    """

    thread_id: str
    messages: list[AnyMessage]
    pending: list[PendingInterrupt] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    notice: str = ""
    invalid: str = ""

    @property
    def reply(self) -> str:
        """Return the newest assistant text, if any."""
        for message in reversed(self.messages):
            if isinstance(message, AIMessage) and message.content and not message.tool_calls:
                return str(message.content)
        return ""


def _clean_id(value: object) -> bool:
    """Return True for a short string a database key or a hash can be."""
    return isinstance(value, str) and 0 < len(value) <= 200 and text_problem(value) is None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        if value.get("type") == "confirm":
            return "confirm"
        if value.get("type") == "question":
            return "question"
        if "action_requests" in value:
            return "review"
    return "unknown"


def interrupt_text(gate: PendingInterrupt) -> str:
    """Render a confirm gate's or a question's own message from its payload (code, not the model)."""
    value = gate.value
    if gate.kind == "question":
        choices = [c for c in value.get("choices") or [] if isinstance(c, dict)]
        options = "; ".join(f"{i}. {c.get('label', '')}" for i, c in enumerate(choices, start=1))
        return f"{value.get('question', '')} Reply with the number of your answer ({options}), or use the buttons."
    amount = value.get("amount_usd")
    figure = ""
    if isinstance(amount, int | float):
        figure = f" Amount: USD {amount:,.2f} ({value.get('direction') or 'charge'})."
    return (f"{value.get('message') or 'Do you confirm?'}{figure} "
            "Reply yes to confirm exactly this request, or use the Confirm / Cancel buttons.")


class AirlockApp:
    """Run turns on threads with a Postgres checkpointer."""

    def __init__(self, *, services: AirlockServices, model: Any | None = None) -> None:
        self.services = services
        self.graph = build_graph(
            services=services, model=model, checkpointer=services.checkpointer()
        )

    # -- threads --------------------------------------------------------------------------
    def new_thread(self, *, user_id: str, title: str = "") -> str:
        """Create a thread owned by ``user_id``."""
        thread_id = uuid.uuid4().hex
        with self.services.pool.connection() as conn:
            conn.execute(
                "INSERT INTO threads (thread_id, user_id, title) VALUES (%s, %s, %s)",
                (thread_id, user_id, title[:120]),
            )
        return thread_id

    def thread_owner(self, thread_id: str) -> str | None:
        """Return the customer who owns the thread, or None if unknown."""
        with self.services.pool.connection() as conn:
            row = conn.execute("SELECT user_id FROM threads WHERE thread_id = %s", (thread_id,)).fetchone()
        return None if row is None else str(row["user_id"])  # type: ignore[call-overload,index]

    def _own(self, thread_id: str, user_id: str) -> None:
        if not _clean_id(thread_id) or not _clean_id(user_id):
            # Not a key any thread can have (the database would refuse NUL bytes, surrogates).
            raise NotAllowedError("unknown conversation; start a new one")
        owner = self.thread_owner(thread_id)
        if owner is None:
            # Threads are created by new_thread; an unknown id (or one made elsewhere, e.g.
            # through the LangGraph API) is never handed to whoever asks first.
            raise NotAllowedError("unknown conversation; start a new one")
        if owner != user_id:
            raise NotAllowedError("this conversation belongs to another customer")

    def list_threads(self, *, user_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """List threads (a customer's own, or all for staff), newest first, with pending gates."""
        sql = "SELECT thread_id, user_id, title, created_at, updated_at FROM threads"
        params: tuple[Any, ...] = ()
        if user_id is not None:
            sql += " WHERE user_id = %s"
            params = (user_id,)
        sql += " ORDER BY updated_at DESC LIMIT %s"
        with self.services.pool.connection() as conn:
            rows = [dict(r) for r in conn.execute(sql, (*params, limit)).fetchall()]  # type: ignore[call-overload]
        for row in rows:
            row["pending"] = [p.kind for p in self.pending(row["thread_id"])]
        return rows

    def _touch(self, thread_id: str, title: str | None = None) -> None:
        with self.services.pool.connection() as conn:
            conn.execute(
                "UPDATE threads SET updated_at = now(),"
                " title = CASE WHEN title = '' AND %s::text IS NOT NULL THEN left(%s::text, 120)"
                " ELSE title END WHERE thread_id = %s",
                (title, title, thread_id),
            )

    # -- state ----------------------------------------------------------------------------
    def _config(self, thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": RECURSION_LIMIT}

    def _snapshot(self, thread_id: str) -> Any:
        return self.graph.get_state(self._config(thread_id))

    @staticmethod
    def _pending_of(snapshot: Any) -> list[PendingInterrupt]:
        return [
            PendingInterrupt(
                id=i.id, kind=_kind(i.value),
                value=dict(i.value) if isinstance(i.value, dict) else {"value": i.value},
            )
            for i in snapshot.interrupts
        ]

    def pending(self, thread_id: str) -> list[PendingInterrupt]:
        """Return the thread's pending interrupts."""
        return self._pending_of(self._snapshot(thread_id))

    def messages(self, thread_id: str) -> list[AnyMessage]:
        """Return the thread's messages."""
        snapshot = self.graph.get_state(self._config(thread_id))
        return list(snapshot.values.get("messages", []))

    def decisions(self, thread_id: str) -> list[dict[str, Any]]:
        """Return the thread's guard decisions."""
        snapshot = self.graph.get_state(self._config(thread_id))
        return list(snapshot.values.get("decisions", []))

    def _invoke(self, payload: Any, thread_id: str, context: AirlockContext, before: int) -> TurnResult:
        try:
            self.graph.invoke(payload, self._config(thread_id), context=context)
        finally:
            snapshot = self._snapshot(thread_id)
            self._reconcile_reviews(thread_id, snapshot)
        return self._result(thread_id, before, snapshot=snapshot)

    def _reconcile_reviews(self, thread_id: str, snapshot: Any) -> None:
        """Keep ``reviews`` consistent with the checkpoint: rows whose interrupt is gone are stale."""
        store = self.services.reviews
        if store is None:
            return
        live = {i.id for i in snapshot.interrupts}
        for row in store.find(thread_id=thread_id, status="pending"):
            if row["interrupt_id"] not in live:
                store.mark_stale(row["review_id"])

    def _result(self, thread_id: str, before: int, notice: str = "", *, snapshot: Any = None,
                invalid: str = "") -> TurnResult:
        snapshot = snapshot if snapshot is not None else self._snapshot(thread_id)
        messages = list(snapshot.values.get("messages", []))
        return TurnResult(
            thread_id=thread_id,
            messages=messages[before:] if before <= len(messages) else messages,
            pending=self._pending_of(snapshot),
            decisions=list(snapshot.values.get("decisions", [])),
            notice=notice,
            invalid=invalid,
        )

    def _refuse(self, thread_id: str, reason: str) -> TurnResult:
        """Return the thread unchanged with the reason the caller's input was refused."""
        snapshot = self._snapshot(thread_id)
        return self._result(thread_id, len(snapshot.values.get("messages", [])), f"Not sent: {reason}.",
                            snapshot=snapshot, invalid=reason)

    def view(self, *, thread_id: str, user_id: str) -> TurnResult:
        """Return a customer's whole thread (messages, decisions, pending gates) from one snapshot."""
        self._own(thread_id, user_id)
        return self._result(thread_id, 0)

    # -- customer actions -----------------------------------------------------------------
    def send(self, *, thread_id: str, user_id: str, text: str) -> TurnResult:
        """Send a customer message; a yes/no reply to a pending confirm gate resumes it.

        Text that is not a string, or holds NUL bytes, other control characters or lone
        surrogates, is refused with ``invalid`` set and nothing sent; accepted text is NFC.
        """
        self._own(thread_id, user_id)
        try:
            text = canonical_text(text, max_length=MAX_MESSAGE_CHARS, what="the message")
        except InvalidArgumentsError as exc:
            return self._refuse(thread_id, exc.reason)
        snapshot = self._snapshot(thread_id)
        pending = self._pending_of(snapshot)
        before = len(snapshot.values.get("messages", []))
        if pending:
            return self._typed_reply(thread_id=thread_id, user_id=user_id, text=text,
                                     snapshot=snapshot, pending=pending, before=before)
        result = self._invoke(
            {"messages": [HumanMessage(content=text)]}, thread_id,
            AirlockContext(user_id=user_id, actor=user_id, roles=["customer"]), before,
        )
        # The title comes from the guarded message (masked, or withheld if blocked), never the raw text.
        guarded = next((m for m in result.messages if isinstance(m, HumanMessage)), None)
        self._touch(thread_id, str(guarded.content) if guarded is not None else None)
        return result

    def _typed_reply(
        self, *, thread_id: str, user_id: str, text: str, snapshot: Any,
        pending: list[PendingInterrupt], before: int,
    ) -> TurnResult:
        """Turn a chat reply into the answer to the one pending gate or question, by code.

        Consent and stated facts come only from what the customer saw: when the model wrote
        text in the turn that raised the interrupt (it may describe the action in its own
        words, e.g. a smaller amount), a typed "yes" or a typed choice does not count until
        the interrupt's own message has been shown again as the last thing. Declining needs
        no such care. The buttons always answer the exact interrupt they show.
        """
        answerable = [p for p in pending if p.kind in ("confirm", "question")]
        if len(answerable) > 1:
            return self._result(
                thread_id, before, snapshot=snapshot,
                notice="Several requests wait for your answer: use the buttons of each.",
            )
        if not answerable:
            return self._result(
                thread_id, before, snapshot=snapshot,
                notice="Your request is waiting for a human reviewer; you will see the answer here.",
            )
        gate = answerable[0]
        if gate.kind == "confirm":
            verdict = parse_confirmation_text(text)
            if verdict is None:
                return self._result(
                    thread_id, before, snapshot=snapshot,
                    notice="Please confirm or cancel the pending request first (yes / no).",
                )
            if verdict == "confirm" and not self._shown_last(thread_id, snapshot, gate):
                return self._reshow(thread_id, user_id, gate, before, snapshot)
            return self.answer_confirm(
                thread_id=thread_id, user_id=user_id, interrupt_id=gate.id, action=verdict
            )
        value = parse_choice_text(text, [c for c in gate.value.get("choices") or [] if isinstance(c, dict)])
        if value is None or not self._shown_last(thread_id, snapshot, gate):
            return self._reshow(thread_id, user_id, gate, before, snapshot)
        return self.answer_question(thread_id=thread_id, user_id=user_id, interrupt_id=gate.id, value=value)

    def _shown_last(self, thread_id: str, snapshot: Any, gate: PendingInterrupt) -> bool:
        """Return True when the interrupt's own message is the last thing the customer saw."""
        for message in reversed(list(snapshot.values.get("messages", []))):
            if isinstance(message, HumanMessage):
                return True  # the model said nothing since the customer last spoke
            if isinstance(message, AIMessage) and message.text.strip():  # text blocks only, as shown
                break  # model text shown with (or after) the interrupt's message
        with self.services.pool.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM interrupt_views WHERE thread_id = %s AND interrupt_id = %s",
                (thread_id, gate.id),
            ).fetchone()
        return row is not None

    def _reshow(
        self, thread_id: str, user_id: str, gate: PendingInterrupt, before: int, snapshot: Any,
    ) -> TurnResult:
        """Show the interrupt's own message again, as the last thing, and record that it was."""
        with self.services.pool.connection() as conn:
            conn.execute(
                "INSERT INTO interrupt_views (thread_id, interrupt_id, user_id) VALUES (%s, %s, %s)"
                " ON CONFLICT (thread_id, interrupt_id) DO UPDATE SET shown_at = now()",
                (thread_id, gate.id, user_id),
            )
        return self._result(thread_id, before, snapshot=snapshot, notice=interrupt_text(gate))

    def answer_question(
        self, *, thread_id: str, user_id: str, interrupt_id: str, value: Any,
    ) -> TurnResult:
        """Answer one pending question with one of its choices (a button's value).

        Only the thread's customer may answer; a value that is not one of the question's
        choices is refused here with a notice (and the graph refuses it too).
        """
        self._own(thread_id, user_id)
        snapshot = self._snapshot(thread_id)
        question = next((p for p in self._pending_of(snapshot) if p.id == interrupt_id), None)
        if question is None or question.kind != "question":
            raise NotAllowedError("there is no such pending question (already answered?)")
        before = len(snapshot.values.get("messages", []))
        choices = [c.get("value") for c in question.value.get("choices") or [] if isinstance(c, dict)]
        if not isinstance(value, str) or value not in choices:
            return self._result(
                thread_id, before, snapshot=snapshot,
                notice="That is not one of the answers: " + interrupt_text(question),
            )
        resume = {"question_id": question.value.get("id"), "value": value, "actor": user_id}
        self._touch(thread_id)
        return self._invoke(
            Command(resume={interrupt_id: resume}), thread_id,
            AirlockContext(user_id=user_id, actor=user_id, roles=["customer"]), before,
        )

    def answer_confirm(
        self, *, thread_id: str, user_id: str, interrupt_id: str, action: str,
        args_hash: str | None = None,
    ) -> TurnResult:
        """Confirm or cancel one pending confirm gate.

        The interrupt id names the exact gate the customer was shown (a changed call raises a
        new gate with a new id); the answer carries that gate's hash, or the hash the UI
        rendered, and the graph executes only when it equals the hash of the call it is about
        to make. A malformed answer (an unknown action, a hash or interrupt id that is not a
        clean string) is refused with ``invalid`` set and the gate left waiting.
        """
        self._own(thread_id, user_id)
        if not isinstance(action, str) or action not in ("confirm", "cancel"):
            return self._refuse(thread_id, "the answer must be 'confirm' or 'cancel'")
        if not _clean_id(interrupt_id):
            return self._refuse(thread_id, "the confirmation names no valid request")
        if args_hash is not None and not _clean_id(args_hash):
            return self._refuse(thread_id, "the confirmation's hash must be a plain string")
        snapshot = self._snapshot(thread_id)
        gate = next((p for p in self._pending_of(snapshot) if p.id == interrupt_id), None)
        if gate is None or gate.kind != "confirm":
            raise NotAllowedError("there is no such pending confirmation (already answered?)")
        before = len(snapshot.values.get("messages", []))
        value = {"action": action, "args_hash": args_hash or gate.value.get("args_hash"), "actor": user_id}
        self._touch(thread_id)
        return self._invoke(
            Command(resume={interrupt_id: value}), thread_id,
            AirlockContext(user_id=user_id, actor=user_id, roles=["customer"]), before,
        )

    # -- reviewer actions -----------------------------------------------------------------
    @staticmethod
    def _require_reviewer(roles: Sequence[str], assignee: str | None = None) -> None:
        if REVIEWER_ROLE not in roles:
            raise NotAllowedError("only a signed-in reviewer may do this")
        if assignee is not None and assignee not in roles:
            raise NotAllowedError(f"this case is assigned to {assignee!r}")

    def list_reviews(self, *, roles: Sequence[str], status: str = "pending") -> list[dict[str, Any]]:
        """List review cases assigned to any of the reviewer's roles, by due time."""
        self._require_reviewer(roles)
        store = self.services.reviews
        assert store is not None
        self._reopen_abandoned()
        return list(store.find(assignees=list(roles), status=status))

    def _reopen_abandoned(self, review_id: str | None = None) -> None:
        """Put cases whose decider process died back in the inbox at once (audited by the store).

        If the dead decider's decision did reach the checkpoint (the interrupt is gone), the
        case is stale, not open.
        """
        store = self.services.reviews
        assert store is not None
        for row in store.recover_abandoned(review_id):
            self._reconcile_reviews(row["thread_id"], self._snapshot(row["thread_id"]))

    def get_review(self, review_id: str, *, roles: Sequence[str]) -> dict[str, Any]:
        """Return one case with its (masked) conversation."""
        self._require_reviewer(roles)
        assert self.services.reviews is not None
        row = self.services.reviews.get(review_id)
        if row is None:
            raise StaleReviewError(f"review {review_id} does not exist")
        self._require_reviewer(roles, row["assignee"])
        row["messages"] = [
            {"role": m.type, "content": str(m.content),
             "tool_calls": [c["name"] for c in getattr(m, "tool_calls", []) or []]}
            for m in self.messages(row["thread_id"])
        ]
        return row

    def decide_review(
        self, *, review_id: str, reviewer: str, roles: Sequence[str], action: str,
        message: str = "", args: dict[str, Any] | None = None,
    ) -> TurnResult:
        """Approve, edit or reject a pending case; exactly once, only while it is pending."""
        self._require_reviewer(roles)
        if action not in ("approve", "edit", "reject"):
            raise ValueError("action must be approve, edit or reject")
        if action == "edit" and not isinstance(args, dict):
            raise ValueError("an edit needs the edited arguments as a JSON object")
        store = self.services.reviews
        assert store is not None
        row = store.get(review_id)
        if row is None:
            raise StaleReviewError(f"review {review_id} does not exist")
        self._require_reviewer(roles, row["assignee"])
        self._reopen_abandoned(review_id)
        claimed = store.claim(review_id, by=reviewer)
        return self._resume_review(claimed, reviewer=reviewer, roles=list(roles), action=action,
                                   message=message, args=args, final_status=None)

    def _resume_review(
        self, row: dict[str, Any], *, reviewer: str, roles: list[str], action: str, message: str,
        args: dict[str, Any] | None, final_status: str | None,
    ) -> TurnResult:
        store = self.services.reviews
        assert store is not None
        thread_id, interrupt_id = row["thread_id"], row["interrupt_id"]
        if interrupt_id not in {p.id for p in self.pending(thread_id)}:
            store.mark_stale(row["review_id"])
            raise StaleReviewError(f"review {row['review_id']} is no longer pending in its thread")
        decision: dict[str, Any] = {"type": action}
        if message:
            decision["message"] = message
        if action == "edit":
            decision["edited_action"] = {"name": row["tool"], "args": args}
        resume = signed_resume(self.services.extras["review_key"], row=row, decision=decision, reviewer=reviewer)
        before = len(self.messages(thread_id))
        owner = self.thread_owner(thread_id) or row.get("user_id")
        status = final_status or {"approve": "approved", "edit": "edited", "reject": "rejected"}[action]
        try:
            result = self._invoke(
                Command(resume={interrupt_id: resume}),
                thread_id, AirlockContext(user_id=owner, actor=reviewer, roles=roles), before,
            )
        except Exception:
            if interrupt_id in {p.id for p in self.pending(thread_id)}:
                store.release(row["review_id"])  # nothing took effect; the case stays open
            else:
                store.finish(row["review_id"], status=status, decision=decision, reviewer=reviewer)
            raise
        store.finish(row["review_id"], status=status, decision=decision, reviewer=reviewer)
        self._touch(thread_id)
        return result

    def sweep_expired(self, *, limit: int = 50) -> int:
        """Apply the timeout action to expired reviews; safe to run in several processes."""
        store = self.services.reviews
        assert store is not None
        me = sweeper_id()
        # Housekeeping first: cases abandoned mid-decision by a crashed process become
        # pending again, and expired idempotency results are dropped.
        self._reopen_abandoned()
        self.services.idempotency.purge_expired()
        done = 0
        for row in store.claim_expired(by=me, limit=limit):
            try:
                self._resume_review(
                    row, reviewer="system:timeout", roles=["system"], action=row["timeout_action"],
                    message="The review timed out; the policy's timeout action was applied.",
                    args=None, final_status="expired",
                )
                self.services.audit.append(
                    "escalation.expired", actor="system:timeout", thread_id=row["thread_id"], tool=row["tool"],
                    payload={"review_id": row["review_id"], "action": row["timeout_action"]},
                )
                done += 1
            except StaleReviewError:
                continue
        return done

    def add_feedback(self, *, thread_id: str, user_id: str, message_id: str | None, rating: int,
                     comment: str = "") -> None:
        """Store thumbs up/down on a turn of the customer's own thread."""
        self._own(thread_id, user_id)
        if rating not in (-1, 1):
            raise ValueError("rating must be 1 or -1")
        with self.services.pool.connection() as conn:
            conn.execute(
                "INSERT INTO feedback (thread_id, message_id, user_id, rating, comment)"
                " VALUES (%s, %s, %s, %s, %s)",
                (thread_id, message_id, user_id, rating, comment[:2000]),
            )
        self.services.audit.append("feedback", actor=user_id, thread_id=thread_id,
                                   payload={"message_id": message_id, "rating": rating})
