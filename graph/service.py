"""The application service: the one API the UI, the CLI and the tests drive.

It owns who may do what: a customer acts only on their own threads and answers only
their own confirm gates; resuming escalations is for reviewers (see ``graph.reviews``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, Durability
from pydantic import ValidationError

from graph.builder import build_graph
from graph.context import AirlockContext
from graph.errors import AirlockError
from graph.interrupts import (
    Decision,
    InterruptKind,
    allowed_decisions,
    confirm_resume,
    interrupt_kind,
    question_resume,
    reviewed_args,
)
from graph.limits import MAX_MESSAGE_CHARS, MAX_REVIEW_MESSAGE_CHARS, too_long
from graph.paging import MAX_PAGE, InvalidCursorError, Page, decode_cursor, encode_cursor, page_size
from graph.reviews import REVIEWER_ROLE, StaleReviewError, signed_resume, sweeper_id
from graph.runtime import AirlockServices
from nodes.guardrails.canonical import InvalidArgumentsError, canonical_arguments, canonical_text, text_problem
from nodes.guardrails.confirm import parse_confirmation_text
from nodes.guardrails.stated import parse_choice_text
from nodes.guards.prefilter import DEFAULT_MAX_CHARS as PREFILTER_MAX_CHARS
from nodes.input_guard import too_long_message

__all__ = [
    "MAX_MESSAGE_CHARS",
    "AirlockApp",
    "InvalidCursorError",
    "InvalidEditError",
    "NotAllowedError",
    "PendingInterrupt",
    "StaleAnswerError",
    "StaleReviewError",
    "ThreadStatus",
    "TurnResult",
    "interrupt_text",
    "thread_status",
]

RECURSION_LIMIT = 80
#: LangGraph's durability for every run, named rather than left to the library's default.
#: "async": each step's checkpoint is written while the next step runs, and ``invoke``/``stream``
#: return only once every write is stored (an error in one is raised), so a pause or answer the
#: caller sees is durable. A crash mid-run re-runs the steps after the last stored checkpoint, as
#: with "sync" (where the crash can land between a step and its checkpoint just the same); a
#: write re-run finds its claim in the idempotency store and does not write twice
#: (tests/test_integrity_kill_loop.py, tests/test_integrity_crash.py). Not "exit", although it
#: measured 14 -> 4 checkpoint calls and about a quarter less CPU per turn (issue 13): it stores
#: nothing before the run ends, so a crash after a write committed would leave the thread without
#: the customer's message (a policy's confirm ``threshold`` may let a write run in the message's
#: own run), or back at a gate already answered, behind its audit and outcome rows; no test shows
#: that safe.
DURABILITY: Durability = "async"
# Who wants the graph's updates of the runs in this context (the HTTP API streams them).
_observer: ContextVar[Callable[[dict[str, Any]], None] | None] = ContextVar("airlock_observer", default=None)


class NotAllowedError(AirlockError, PermissionError):
    """The caller may not act on this thread or interrupt."""


class InvalidEditError(AirlockError, ValueError):
    """A reviewer's edit does not make valid arguments for the case's tool; the case stays pending."""


class StaleAnswerError(NotAllowedError):
    """The gate or question answered is no longer pending (answered elsewhere, e.g. another tab)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingInterrupt:
    """A paused gate: a confirm gate (the customer) or an escalation (a reviewer)."""

    id: str
    kind: InterruptKind
    #: The payload as raised (see ``graph.interrupts``; an older checkpoint's, as it was then).
    value: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnResult:
    """What a turn produced, for a UI.

    Attributes:
        invalid: Why the caller's input was refused before it reached the graph (empty when it
            was accepted); the thread is then exactly as it was.
        running: The thread's turn is still under way (read between two of its steps, e.g. by a
            page polling while a reviewer's decision resumes it): read it again for the answer.
    """

    thread_id: str
    messages: list[AnyMessage]
    pending: list[PendingInterrupt] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    notice: str = ""
    invalid: str = ""
    running: bool = False

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


def _decision(action: str, *, message: str, tool: str, args: dict[str, Any] | None) -> Decision:
    """Return a reviewer's decision in LangChain's shape (the message only when there is one)."""
    decision: Decision
    if action == "edit":
        decision = {"type": "edit", "edited_action": {"name": tool, "args": dict(args or {})}}
    elif action == "approve":
        decision = {"type": "approve"}
    else:
        decision = {"type": "reject"}
    if message:
        decision["message"] = message
    return decision


ThreadStatus = Literal["idle", "waiting_review", "waiting_customer"]


def thread_status(kinds: Sequence[str]) -> ThreadStatus:
    """Return what a thread with pending interrupts of these kinds waits for.

    A reviewer's case (or a pause nobody but staff can answer) outranks the customer's gates:
    the customer cannot move the thread on until the reviewer has decided.
    """
    if any(kind not in ("confirm", "question") for kind in kinds):
        return "waiting_review"
    return "waiting_customer" if kinds else "idle"


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
        return None if row is None else str(row["user_id"])  # type: ignore[call-overload]

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
        """List the newest threads (a customer's own, or all for staff) with their status.

        Read from the ``threads`` table alone (see :meth:`thread_page`); no checkpoint is loaded.
        """
        return self.thread_page(user_id=user_id, limit=limit).items

    def thread_page(self, *, user_id: str | None = None, limit: int | None = None,
                    cursor: str | None = None) -> Page:
        """Return one page of threads, most recent activity first, with the true total.

        Each row has ``thread_id``, ``user_id``, ``title``, ``created_at``, ``updated_at``,
        ``status`` (``idle``, ``waiting_review`` or ``waiting_customer``) and ``pending`` (the
        kinds of the pending interrupts), kept by the service as turns run, so no checkpoint
        is read. ``cursor`` is the ``next`` of the previous page. A thread active while the
        caller pages moves to the front of the list: it is on the first page of a reload.

        Raises:
            InvalidCursorError: ``cursor`` or ``limit`` is not one this list accepts.
        """
        size = page_size(limit)
        where: list[str] = []
        params: list[Any] = []
        if user_id is not None:
            where.append("user_id = %s")
            params.append(user_id)
        counted = "SELECT count(*) AS n FROM threads" + (" WHERE " + " AND ".join(where) if where else "")
        count_params = list(params)
        start_sql = ""
        if cursor:
            when, key = decode_cursor("threads", cursor)
            where.append("(updated_at, thread_id) < (%s, %s)")
            params += [when, key]
            start_sql = counted + (" AND" if count_params else " WHERE") + " (updated_at, thread_id) >= (%s, %s)"
        sql = ("SELECT thread_id, user_id, title, created_at, updated_at, status, pending FROM threads"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY updated_at DESC, thread_id DESC LIMIT %s")
        with self.services.pool.connection() as conn:
            rows = [dict(r) for r in conn.execute(sql, (*params, size + 1)).fetchall()]
            total = int(conn.execute(counted, count_params).fetchone()["n"])  # type: ignore[index,call-overload]
            start = 0
            if start_sql:
                start = int(conn.execute(start_sql, [*count_params, when, key]).fetchone()["n"])  # type: ignore[index,call-overload]
        more = len(rows) > size
        rows = rows[:size]
        for row in rows:
            if row["status"] is None:
                # A thread from before the status columns: its checkpoint once, then the table.
                row["status"], row["pending"] = self._record_status(row["thread_id"], self._snapshot(row["thread_id"]))
            row["pending"] = list(row["pending"] or [])
        last = rows[-1] if rows else None
        following = encode_cursor("threads", last["updated_at"], last["thread_id"]) if more and last else None
        return Page(items=rows, total=total, next=following, start=start)

    def _record_status(self, thread_id: str, snapshot: Any) -> tuple[str, list[str]]:
        """Store what the thread waits for, from the snapshot just read; return (status, pending kinds)."""
        kinds: list[str] = [interrupt_kind(i.value) for i in snapshot.interrupts]
        status = thread_status(kinds)
        configurable = (getattr(snapshot, "config", None) or {}).get("configurable") or {}
        checkpoint = str(configurable.get("checkpoint_id") or "")
        with self.services.pool.connection() as conn:
            # Only forward: another process may have resumed the thread since this snapshot was read.
            conn.execute(
                "UPDATE threads SET status = %s, pending = %s, status_checkpoint = %s WHERE thread_id = %s"
                " AND (status_checkpoint IS NULL OR status_checkpoint <= %s)",
                (status, kinds, checkpoint, thread_id, checkpoint),
            )
        return status, kinds

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
                id=i.id, kind=interrupt_kind(i.value),
                value=dict(i.value) if isinstance(i.value, dict) else {"value": i.value},
            )
            for i in snapshot.interrupts
        ]

    def pending(self, thread_id: str) -> list[PendingInterrupt]:
        """Return the thread's pending interrupts."""
        return self._pending_of(self._snapshot(thread_id))

    def _split(self, thread_id: str, snapshot: Any) -> tuple[int, list[AnyMessage]]:
        """Return how many messages the transcript holds, and the state's messages not among them."""
        current = list(snapshot.values.get("messages", []))
        archived, both = self.services.transcript.count(thread_id, [str(m.id) for m in current])
        return archived, [m for m in current if str(m.id) not in both]

    def _all_messages(self, thread_id: str, snapshot: Any) -> list[AnyMessage]:
        """Return the whole conversation: finished turns from the transcript, then the state's."""
        _, current = self._split(thread_id, snapshot)
        return [*self.services.transcript.messages(thread_id), *current]

    def _count(self, thread_id: str, snapshot: Any) -> int:
        """Return how many messages the whole conversation has (where a turn's new ones start)."""
        archived, current = self._split(thread_id, snapshot)
        return archived + len(current)

    def messages(self, thread_id: str) -> list[AnyMessage]:
        """Return the thread's messages, every turn."""
        return self._all_messages(thread_id, self._snapshot(thread_id))

    def decisions(self, thread_id: str) -> list[dict[str, Any]]:
        """Return the thread's guard decisions, every turn, oldest first (``guard_decisions``)."""
        return self.services.decision_log.for_thread(thread_id)

    @staticmethod
    @contextmanager
    def observe(callback: Callable[[dict[str, Any]], None]) -> Iterator[None]:
        """Call ``callback`` with each graph update (``{node: update}``) of the runs in this block."""
        token = _observer.set(callback)
        try:
            yield
        finally:
            _observer.reset(token)

    def _invoke(self, payload: Any, thread_id: str, context: AirlockContext, before: int) -> TurnResult:
        observer = _observer.get()
        try:
            if observer is None:
                self.graph.invoke(payload, self._config(thread_id), context=context, durability=DURABILITY)
            else:
                for update in self.graph.stream(payload, self._config(thread_id), context=context,
                                                stream_mode="updates", durability=DURABILITY):
                    observer(update)
        finally:
            snapshot = self._snapshot(thread_id)
            self._reconcile_reviews(thread_id, snapshot)
            self._record_status(thread_id, snapshot)
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
        # Steps still to run and no interrupt waiting: the turn is under way in some process.
        running = bool(snapshot.next) and not snapshot.interrupts
        # Only the messages after ``before`` are read (and restored for display).
        archived, current = self._split(thread_id, snapshot)
        if running and current and isinstance(current[-1], AIMessage) and not current[-1].tool_calls:
            # The model's answer is checkpointed before the output guard reads it: never show it.
            current = current[:-1]
        if before > archived + len(current):
            before = 0
        if before >= archived:
            new = current[before - archived:]
        else:
            new = [*self.services.transcript.messages(thread_id, after=before), *current]
        return TurnResult(
            thread_id=thread_id,
            messages=self._as_shown(thread_id, new),
            pending=self._pending_of(snapshot),
            decisions=self.decisions(thread_id),
            notice=notice,
            invalid=invalid,
            running=running,
        )

    def _as_shown(self, thread_id: str, messages: list[AnyMessage]) -> list[AnyMessage]:
        """Return messages as the customer sees them: their own values back in the answers.

        Checkpoints keep answers with placeholders (``graph.checkpoint_privacy``), so neither
        the stored history nor the model's next turn holds the values; they are put back
        only for display, exactly where the output guard restored them.
        """
        shown: list[AnyMessage] = []
        for message in messages:
            if isinstance(message, AIMessage) and isinstance(message.content, str) and "<" in message.content:
                text = self.services.restore_for_customer(thread_id, message.content)
                if text != message.content:
                    message = message.model_copy(update={"content": text})
            shown.append(message)
        return shown

    def _refuse(self, thread_id: str, reason: str, *, prefix: str = "Not sent: ") -> TurnResult:
        """Return the thread unchanged with the reason the caller's input was refused."""
        snapshot = self._snapshot(thread_id)
        notice = f"{prefix}{reason}" if reason.endswith(".") else f"{prefix}{reason}."
        return self._result(thread_id, self._count(thread_id, snapshot), notice,
                            snapshot=snapshot, invalid=reason)

    @property
    def input_limit(self) -> int | None:
        """Return the longest customer message the policy's input guards read (None: no limit)."""
        for layer in self.services.policy.guards.input:
            if layer.layer == "prefilter":
                value = (layer.params or {}).get("max_chars", PREFILTER_MAX_CHARS)
                return int(value) if isinstance(value, int | str) and str(value).isdigit() else None
        return None

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
        if isinstance(text, str) and len(text) > MAX_MESSAGE_CHARS:
            return self._refuse(thread_id, too_long(len(text)).rstrip("."))
        try:
            text = canonical_text(text, max_length=MAX_MESSAGE_CHARS, what="the message")
        except InvalidArgumentsError as exc:
            return self._refuse(thread_id, exc.reason)
        limit = self.input_limit
        if limit is not None and len(text) > limit:
            # Never cut: the customer is told the limit and keeps their text; the whole message
            # (PII masked, encrypted) is kept for the record beside the conversation, where
            # `privacy forget` erases it; the audit names it by id (audit payloads hold no text).
            record = self.services.transcript.keep_refused(
                thread_id, user_id=user_id, text=self.services.redact(text), chars=len(text), reason="too_long",
            )
            self.services.audit.append(
                "input.too_long", actor=user_id, thread_id=thread_id,
                payload={"chars": len(text), "limit": limit, "record": record},
            )
            return self._refuse(thread_id, too_long_message(len(text), limit), prefix="")
        snapshot = self._snapshot(thread_id)
        pending = self._pending_of(snapshot)
        before = self._count(thread_id, snapshot)
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
            raise StaleAnswerError("there is no such pending question (already answered?)")
        before = self._count(thread_id, snapshot)
        choices = [c.get("value") for c in question.value.get("choices") or [] if isinstance(c, dict)]
        if not isinstance(value, str) or value not in choices:
            return self._result(
                thread_id, before, snapshot=snapshot,
                notice="That is not one of the answers: " + interrupt_text(question),
            )
        resume = question_resume(question_id=str(question.value.get("id")), value=value, actor=user_id)
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
            raise StaleAnswerError("there is no such pending confirmation (already answered?)")
        before = self._count(thread_id, snapshot)
        value = confirm_resume(action="confirm" if action == "confirm" else "cancel",
                               args_hash=args_hash or gate.value.get("args_hash"), actor=user_id)
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
        """List every review case assigned to any of the reviewer's roles, by due time (all pages)."""
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = self.review_page(roles=roles, status=status, limit=MAX_PAGE, cursor=cursor)
            rows += page.items
            if page.next is None:
                return rows
            cursor = page.next

    def review_page(self, *, roles: Sequence[str], status: str = "pending", limit: int | None = None,
                    cursor: str | None = None) -> Page:
        """Return one page of the reviewer's cases, oldest due first, with the true count.

        ``cursor`` is the ``next`` of the previous page (see ``ReviewStore.page``).

        Raises:
            InvalidCursorError: ``cursor`` or ``limit`` is not one this list accepts.
        """
        self._require_reviewer(roles)
        store = self.services.reviews
        assert store is not None
        if cursor is None:
            self._reopen_abandoned()  # once per listing, not once per page
        return store.page(assignees=list(roles), status=status, limit=limit, cursor=cursor)

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
        if not isinstance(message, str) or len(message) > MAX_REVIEW_MESSAGE_CHARS:
            raise ValueError(f"the reviewer's message must be text of at most {MAX_REVIEW_MESSAGE_CHARS:,} characters")
        if args is not None and len(json.dumps(args, default=str)) > MAX_MESSAGE_CHARS:
            raise ValueError(f"the edited arguments are too large (over {MAX_MESSAGE_CHARS:,} characters of JSON)")
        store = self.services.reviews
        assert store is not None
        row = store.get(review_id)
        if row is None:
            raise StaleReviewError(f"review {review_id} does not exist")
        self._require_reviewer(roles, row["assignee"])
        allowed = allowed_decisions(row.get("payload"))
        if action not in allowed:
            raise NotAllowedError(f"this case allows only: {', '.join(allowed)}")
        if action == "edit":
            assert args is not None
            self._check_edit(row, args)  # before the case is taken: a bad edit leaves it pending
        self._reopen_abandoned(review_id)
        claimed = store.claim(review_id, by=reviewer)
        return self._resume_review(claimed, reviewer=reviewer, roles=list(roles), action=action,
                                   message=message, args=args, final_status=None)

    def _check_edit(self, row: dict[str, Any], edit: dict[str, Any]) -> None:
        """Raise InvalidEditError unless ``edit`` merged over the case's arguments fits the tool.

        The graph merges the edit over the call's real arguments (the edit's keys win); the
        case shows them masked, so a masked value the edit leaves alone is not held against it.
        """
        spec = self.services.domain.tools.get(str(row["tool"]))
        if spec is None:
            raise InvalidEditError(f"the arguments of {row['tool']!r} cannot be edited")
        try:
            edit = canonical_arguments(edit)
        except InvalidArgumentsError as exc:
            raise InvalidEditError(f"the edited arguments are not valid: {exc.reason}; "
                                   "the case is still pending") from None
        merged = {**reviewed_args(row.get("payload")), **edit}
        try:
            spec.args_schema.model_validate(merged)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()
                if not e["loc"] or e["loc"][0] in edit or e["type"] in ("missing", "extra_forbidden")
            ]
            if problems:
                raise InvalidEditError(
                    f"the edited arguments are not valid for {row['tool']}: {'; '.join(problems)}; "
                    "the case is still pending"
                ) from None

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
        decision = _decision(action, message=message, tool=str(row["tool"]), args=args)
        resume = signed_resume(self.services.review_key, row=row, decision=decision, reviewer=reviewer)
        before = self._count(thread_id, self._snapshot(thread_id))
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
                     comment: str = "") -> int:
        """Store thumbs up/down on a turn of the customer's own thread; return the feedback id."""
        self._own(thread_id, user_id)
        if rating not in (-1, 1):
            raise ValueError("rating must be 1 or -1")
        if not isinstance(comment, str) or len(comment) > MAX_REVIEW_MESSAGE_CHARS:
            raise ValueError(f"the comment must be text of at most {MAX_REVIEW_MESSAGE_CHARS:,} characters")
        # Masked like everything else that is stored: the values are not kept (no vault).
        comment = str(self.services.redact(comment)) if comment else ""
        with self.services.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO feedback (thread_id, message_id, user_id, rating, comment)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (thread_id, message_id, user_id, rating, comment),
            ).fetchone()
        self.services.audit.append("feedback", actor=user_id, thread_id=thread_id,
                                   payload={"message_id": message_id, "rating": rating})
        return int(row["id"])  # type: ignore[index,call-overload]

    def comment_feedback(self, *, feedback_id: int, user_id: str, comment: str) -> None:
        """Add the comment to the customer's own rating (the thumb is stored first, the words after)."""
        if not isinstance(comment, str) or len(comment) > MAX_REVIEW_MESSAGE_CHARS:
            raise ValueError(f"the comment must be text of at most {MAX_REVIEW_MESSAGE_CHARS:,} characters")
        # Masked like everything else that is stored: the values are not kept (no vault).
        comment = str(self.services.redact(comment)) if comment else ""
        with self.services.pool.connection() as conn:
            updated = conn.execute(
                "UPDATE feedback SET comment = %s WHERE id = %s AND user_id = %s",
                (comment, int(feedback_id), user_id),
            ).rowcount
        if updated != 1:
            raise NotAllowedError("there is no such rating of yours to comment on")
