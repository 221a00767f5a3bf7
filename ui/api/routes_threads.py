"""Customer routes: threads, messages (streamed), confirm gates, run streams, feedback."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Query, Response
from langchain_core.messages import AIMessage, HumanMessage

from graph.paging import DEFAULT_PAGE, MAX_PAGE
from graph.service import interrupt_text
from ui.api.deps import Customer, State, owned_thread
from ui.api.problems import Problem, problem_response
from ui.api.runs import request_hash
from ui.api.schemas import AnswerIn, FeedbackIn, MessageIn, ThreadIn, ThreadOut, ThreadPage, ThreadView
from ui.api.streams import first_event, last_event_id, run_stream

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["customer"])
_KEY = Header(alias="Idempotency-Key", max_length=200, pattern=r"^[\x21-\x7e]+$",
              description="The same key re-posted returns the same run; it never starts a second one.")
_LAST = Header(alias="Last-Event-ID", description="Resume after this event of the run.")
_SSE_EXAMPLE = 'id: 3\nevent: gate\ndata: {"interrupt_id": "...", "kind": "confirm", "amount_usd": 100}\n\n'
_SSE: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {"example": _SSE_EXAMPLE}},
              "description": "events: run, guard, tool, gate, review, notice, answer, error, done"}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no or invalid token"}, 403: {"description": "not allowed, or a guardrail refusal"},
    404: {"description": "unknown thread"}, 409: {"description": "stale gate, or a turn is running"},
    422: {"description": "bad input"}, 429: {"description": "rate limited"},
}


@router.post("/threads", status_code=201, response_model=ThreadOut, responses=_ERRORS)
async def create_thread(state: State, who: Customer, body: ThreadIn | None = None) -> ThreadOut:
    """Start a thread for the signed-in customer."""
    assert who.customer_id is not None
    title = body.title if body else ""
    thread_id = await anyio.to_thread.run_sync(lambda: state.app.new_thread(user_id=who.customer_id or "", title=title))
    return ThreadOut(thread_id=thread_id, title=title)


@router.get("/threads", response_model=ThreadPage, responses=_ERRORS)
async def list_threads(state: State, who: Customer, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
                       cursor: Annotated[str | None, Query(max_length=400)] = None) -> ThreadPage:
    """List the customer's own threads, most recent activity first, one page at a time.

    Each thread says what it waits for (``status``, ``pending``), read from the threads table.
    """
    page = await anyio.to_thread.run_sync(
        lambda: state.app.thread_page(user_id=who.customer_id, limit=limit, cursor=cursor))
    return ThreadPage(
        items=[ThreadOut(thread_id=r["thread_id"], title=r["title"], pending=r["pending"], status=r["status"],
                         updated_at=r["updated_at"]) for r in page.items],
        total=page.total, next=page.next,
    )


def _view(message: Any) -> dict[str, Any] | None:
    # Customer text as guarded (masked) and answers that passed the output guard; tool results
    # and the model's words beside tool calls are not for the customer.
    if isinstance(message, HumanMessage):
        return {"id": message.id, "role": "customer", "content": str(message.content)}
    if isinstance(message, AIMessage) and not message.tool_calls and message.content:
        return {"id": message.id, "role": "assistant", "content": str(message.content)}
    return None


@router.get("/threads/{thread_id}", response_model=ThreadView, responses=_ERRORS)
async def show_thread(state: State, who: Customer, thread_id: str) -> ThreadView:
    """Return a thread's messages and pending gates."""
    await owned_thread(state, who, thread_id)
    result = await anyio.to_thread.run_sync(
        lambda: state.app.view(thread_id=thread_id, user_id=who.customer_id or ""))
    messages = [v for v in (_view(m) for m in result.messages) if v is not None]
    pending = [{"interrupt_id": p.id, "kind": p.kind,
                "text": interrupt_text(p) if p.kind in ("confirm", "question") else "waiting for a reviewer",
                **({"args_hash": p.value["args_hash"]} if "args_hash" in p.value else {})}
               for p in result.pending]
    return ThreadView(thread_id=thread_id, messages=messages, pending=pending, running=result.running)


@router.post("/threads/{thread_id}/messages", responses={**_SSE, **_ERRORS})
async def send_message(state: State, who: Customer, thread_id: str, body: MessageIn,
                       idempotency_key: Annotated[str | None, _KEY] = None) -> Response:
    """Send a message; the turn streams as Server-Sent Events.

    A message the input guard blocks is refused with 403 and the guard's decision. The turn
    runs on when the client disconnects; read on at ``/v1/runs/{run_id}/events``.
    """
    await owned_thread(state, who, thread_id)
    customer = who.customer_id or ""
    run, created = await anyio.to_thread.run_sync(lambda: state.runs.claim(
        thread_id=thread_id, user_id=customer, key=idempotency_key,
        fingerprint=request_hash("message", thread_id, body.model_dump()), kind="message"))
    if created:
        state.runner.start(run, lambda: state.app.send(thread_id=thread_id, user_id=customer, text=body.text))
    # The status line waits for the input guard: a refused message is a 403, not a stream.
    first = await first_event(state, str(run["run_id"]), after=1)
    if first is not None and first["event"] == "guard":
        data = first["data"]
        if isinstance(data, dict) and data.get("input_action") == "block":
            blocked = [d for d in data.get("decisions", []) if d.get("action") == "block"]
            return problem_response(403, "the message was refused by the input guard",
                                    decision={"action": "block", "decisions": blocked or data.get("decisions")},
                                    run_id=run["run_id"])
    return run_stream(state, run, after=0)


@router.post("/threads/{thread_id}/gates/{interrupt_id}", responses={**_SSE, **_ERRORS})
async def answer_gate(state: State, who: Customer, thread_id: str, interrupt_id: str, body: AnswerIn,
                      idempotency_key: Annotated[str | None, _KEY] = None) -> Response:
    """Answer a pending confirm gate (confirm / cancel) or question (choose); streams the turn.

    A gate that is no longer pending (already answered, or replaced) is a 409.
    """
    await owned_thread(state, who, thread_id)
    customer = who.customer_id or ""
    fingerprint = request_hash("answer", thread_id, {"interrupt": interrupt_id, **body.model_dump()})
    if idempotency_key is not None:
        existing = await anyio.to_thread.run_sync(lambda: state.runs.claim_existing(
            user_id=customer, key=idempotency_key, fingerprint=fingerprint))
        if existing is not None:
            return run_stream(state, existing, after=0)
    pending = await anyio.to_thread.run_sync(lambda: state.app.pending(thread_id))
    gate = next((p for p in pending if p.id == interrupt_id), None)
    wanted = "question" if body.action == "choose" else "confirm"
    if gate is None or gate.kind != wanted:
        raise Problem(409, f"there is no such pending {wanted} on this thread (already answered?)")
    run, created = await anyio.to_thread.run_sync(lambda: state.runs.claim(
        thread_id=thread_id, user_id=customer, key=idempotency_key, fingerprint=fingerprint, kind="answer"))
    if created:
        if body.action == "choose":
            state.runner.start(run, lambda: state.app.answer_question(
                thread_id=thread_id, user_id=customer, interrupt_id=interrupt_id, value=body.value))
        else:
            state.runner.start(run, lambda: state.app.answer_confirm(
                thread_id=thread_id, user_id=customer, interrupt_id=interrupt_id, action=body.action,
                args_hash=body.args_hash))
    return run_stream(state, run, after=0)


@router.get("/runs/{run_id}/events", responses={**_SSE, **_ERRORS})
async def run_events(state: State, who: Customer, run_id: str,
                     last_event: Annotated[str | None, _LAST] = None) -> Response:
    """Stream a run's events from the start, or after ``Last-Event-ID`` (on any process)."""
    after = last_event_id(last_event)
    run = await anyio.to_thread.run_sync(state.runs.get, run_id) if run_id.isascii() and run_id.isalnum() else None
    if run is None or run["user_id"] != who.customer_id:
        raise Problem(404, "unknown run")
    return run_stream(state, run, after=after)


@router.post("/threads/{thread_id}/feedback", status_code=204, responses=_ERRORS)
async def feedback(state: State, who: Customer, thread_id: str, body: FeedbackIn) -> Response:
    """Rate a turn of the customer's own thread."""
    await owned_thread(state, who, thread_id)
    await anyio.to_thread.run_sync(lambda: state.app.add_feedback(
        thread_id=thread_id, user_id=who.customer_id or "", message_id=body.message_id, rating=body.rating,
        comment=body.comment))
    return Response(status_code=204)

