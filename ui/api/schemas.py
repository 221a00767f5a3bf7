"""Request and response bodies of the HTTP API (with OpenAPI examples)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from nodes.guardrails.canonical import text_problem

__all__ = [
    "AnswerIn", "DecisionIn", "FeedbackIn", "MessageIn", "ReviewPage", "ThreadIn", "ThreadOut", "ThreadPage",
    "ThreadView", "VerifyOut",
]


def _clean(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"the text {problem}")
    return value


#: Text the database can store and a guard can read: no NUL, control characters or lone surrogates.
Text = Annotated[str, AfterValidator(_clean)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThreadIn(_Body):
    """A new thread."""

    title: Text = Field(default="", max_length=120, examples=["A question about my order"])


class ThreadOut(BaseModel):
    """A thread of the caller."""

    thread_id: str = Field(examples=["6f1c0d4e9b7a4c55a1d2e3f405162738"])
    title: str = ""
    pending: list[str] = Field(default_factory=list, examples=[["confirm"]])
    status: Literal["idle", "waiting_review", "waiting_customer"] = Field(
        default="idle", description="what the thread waits for: nothing, a reviewer, or the customer's answer")
    updated_at: datetime | None = None


class ThreadPage(BaseModel):
    """One page of the caller's threads, most recent activity first."""

    items: list[ThreadOut]
    total: int = Field(description="how many threads the caller has (all pages)")
    next: str | None = Field(default=None, description="pass as ?cursor= for the next page; null on the last")


class ReviewPage(BaseModel):
    """One page of the reviewer's cases, oldest due first."""

    items: list[dict[str, Any]]
    total: int = Field(description="how many cases of this status the reviewer's roles have (all pages)")
    next: str | None = Field(default=None, description="pass as ?cursor= for the next page; null on the last")


class ThreadView(BaseModel):
    """A thread's messages (as guarded) and its pending gates."""

    thread_id: str
    messages: list[dict[str, Any]] = Field(examples=[[{"role": "human", "content": "What can you help me with?"}]])
    pending: list[dict[str, Any]] = Field(default_factory=list)
    running: bool = Field(False, description=(
        "The thread's turn is still under way (e.g. resumed by a reviewer's decision); its answer "
        "is not shown until the output guard has read it: read the thread again."))


class MessageIn(_Body):
    """A customer message; the reply streams as Server-Sent Events."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"text": "What can you help me with?"}]})

    text: Text = Field(min_length=1, max_length=8000)


class AnswerIn(_Body):
    """The customer's answer to a confirm gate (or a question's choice)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"action": "confirm", "args_hash": "9f2c..."}]})

    action: Literal["confirm", "cancel", "choose"]
    args_hash: Text | None = Field(default=None, max_length=200)
    value: Text | None = Field(default=None, max_length=200, description="the chosen value (action 'choose')")


class FeedbackIn(_Body):
    """Thumbs up or down on a turn."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rating": 1, "comment": "quick"}]})

    rating: Literal[1, -1]
    message_id: Text | None = Field(default=None, max_length=200)
    comment: Text = Field(default="", max_length=2000)


class DecisionIn(_Body):
    """A reviewer's decision on a case."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"action": "reject", "message": "Not eligible"}]})

    action: Literal["approve", "edit", "reject"]
    message: Text = Field(default="", max_length=2000)
    args: dict[str, Any] | None = None


class VerifyOut(BaseModel):
    """The audit chain's verification."""

    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str | None = None
    #: The newest event a signed anchor covers (0: none).
    last_anchor_seq: int = 0
    #: Events after it: the chain cannot prove that none was deleted from its end.
    unanchored: int = 0
