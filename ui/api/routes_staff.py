"""Staff routes: the reviewer inbox (reviewers only) and the audit log (auditors only)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query

from graph.paging import DEFAULT_PAGE, MAX_PAGE
from ui.api.deps import Auditor, Reviewer, State
from ui.api.problems import Problem
from ui.api.schemas import DecisionIn, ReviewPage, VerifyOut

__all__ = ["router"]

router = APIRouter(prefix="/v1")
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no or invalid token"}, 403: {"description": "not a reviewer / auditor, or not assigned"},
    404: {"description": "unknown case"}, 409: {"description": "the case is no longer pending"},
    422: {"description": "bad input"}, 429: {"description": "rate limited"},
}


_STATUSES = "^(pending|deciding|approved|edited|rejected|expired|stale)$"


def _case_id(review_id: str) -> str:
    if len(review_id) > 200 or not (review_id.isascii() and review_id.replace("-", "").replace("_", "").isalnum()):
        raise Problem(404, "unknown review")
    return review_id


def _case(state: State, review_id: str) -> dict[str, Any] | None:
    store = state.app.services.reviews
    return None if store is None else store.get(review_id)


@router.get("/reviews", tags=["reviewer"], response_model=ReviewPage, responses=_ERRORS)
async def list_reviews(state: State, who: Reviewer, status: Annotated[str, Query(pattern=_STATUSES)] = "pending",
                       limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
                       cursor: Annotated[str | None, Query(max_length=400)] = None) -> ReviewPage:
    """List cases assigned to any of the reviewer's roles, oldest due first, one page at a time.

    ``total`` is the true number of cases in ``status``; ``next`` is the cursor of the next page.
    """
    page = await anyio.to_thread.run_sync(lambda: state.app.review_page(
        roles=list(who.roles), status=status, limit=limit, cursor=cursor))
    return ReviewPage(items=page.items, total=page.total, next=page.next)


@router.get("/reviews/{review_id}", tags=["reviewer"], responses=_ERRORS)
async def show_review(state: State, who: Reviewer, review_id: str) -> dict[str, Any]:
    """Return one case with its (masked) conversation."""
    _case_id(review_id)
    row = await anyio.to_thread.run_sync(_case, state, review_id)
    if row is None:
        raise Problem(404, "unknown review")
    return await anyio.to_thread.run_sync(lambda: state.app.get_review(review_id, roles=list(who.roles)))


@router.post("/reviews/{review_id}/decision", tags=["reviewer"], responses=_ERRORS)
async def decide_review(state: State, who: Reviewer, review_id: str, body: DecisionIn) -> dict[str, Any]:
    """Approve, edit (arguments pass the guardrails again) or reject a pending case, exactly once."""
    _case_id(review_id)
    row = await anyio.to_thread.run_sync(_case, state, review_id)
    if row is None:
        raise Problem(404, "unknown review")
    result = await anyio.to_thread.run_sync(lambda: state.app.decide_review(
        review_id=review_id, reviewer=who.subject, roles=list(who.roles), action=body.action,
        message=body.message, args=body.args))
    return {"review_id": review_id, "thread_id": result.thread_id, "decision": body.action,
            "pending": [p.kind for p in result.pending]}


@router.get("/audit/verify", tags=["auditor"], response_model=VerifyOut, responses=_ERRORS)
async def audit_verify(state: State, who: Auditor) -> VerifyOut:
    """Recompute the audit log's hash chain and report the first break."""
    report = await anyio.to_thread.run_sync(state.app.services.audit.verify)
    return VerifyOut(ok=report.ok, checked=report.checked, first_bad_id=report.first_bad_id,
                     reason=report.reason or None, last_anchor_seq=report.last_anchor_seq,
                     unanchored=report.unanchored)


@router.get("/audit/events", tags=["auditor"], responses=_ERRORS)
async def audit_export(state: State, who: Auditor,
                       thread_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,200}$")] = None,
                       limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> list[dict[str, Any]]:
    """Export audit events (newest first), with their hashes, for an external check."""
    events = await anyio.to_thread.run_sync(lambda: state.app.services.audit.events(thread_id=thread_id, limit=limit))
    return [{"id": e.id, "ts": e.ts.isoformat(), "type": e.event_type, "actor": e.actor, "thread_id": e.thread_id,
             "tool": e.tool, "payload": e.payload, "hash": e.hash} for e in events]
