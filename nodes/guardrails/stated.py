"""Customer-stated facts: the system asks, and the customer's answer is the fact.

Some rules need something only the customer can state (why they cancel, whether they ask for
compensation). Keywords found in a chat history are not that fact: an unrelated remark, an
earlier turn or a question about something else would count. So before a tool's guardrails,
:func:`ask_stated_facts` raises one ``interrupt()`` per question the domain declares for the
tool (see ``graph.domain.StatedQuestion``) and returns the answers as conversation facts.

The payload is a :class:`graph.interrupts.QuestionRequest`; the only accepted resume value is
a :class:`graph.interrupts.QuestionResume` (``{"question_id": <id>, "value": <one of the
choice values>, "actor": <the customer>}``). Anything else is
refused and the question is asked again. A chat reply is turned into that value by
:func:`parse_choice_text`, which accepts only the choice's number or its exact label.

LangGraph re-runs the node from the top on resume: everything before each ``interrupt()``
here is a pure read (the domain's facts for the ``when`` conditions); the one side effect,
the ``question.asked`` audit row, is written only when the interrupt is raised.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from langgraph.errors import GraphInterrupt
from langgraph.types import interrupt

from graph.cel import CelError, Condition
from graph.domain import Choice, Domain, StatedQuestion
from graph.interrupts import QuestionRequest
from nodes.audit import AuditLog

__all__ = [
    "QuestionAnswer",
    "ask_stated_facts",
    "parse_choice_text",
    "parse_question_resume",
    "question_payload",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class QuestionAnswer:
    """A parsed resume value for a question: the picked choice, or why it was refused."""

    choice: Choice | None
    reason: str = ""


def question_payload(question: StatedQuestion, *, tool: str, call_id: str) -> QuestionRequest:
    """Return the interrupt payload for one question of one tool call."""
    return {
        "type": "question",
        "id": f"{call_id}:{question.id}",
        "question": question.question,
        "choices": [{"value": c.value, "label": c.label} for c in question.choices],
        "tool": tool,
        "tool_call_id": call_id,
    }


def parse_question_resume(
    value: Any, *, question: StatedQuestion, question_id: str, user_id: str | None,
) -> QuestionAnswer:
    """Accept only the documented answer, to this question, from the thread's customer.

    The answerer is read from the resume value the service wrote, not from the run's context:
    the node re-runs under whoever resumes a later interrupt of the same call (a reviewer).
    """
    if not isinstance(value, Mapping):
        return QuestionAnswer(choice=None, reason="the answer must be an object")
    if not user_id or value.get("actor") != user_id:
        # Only the customer can state their own reason; a reviewer or another customer cannot.
        return QuestionAnswer(choice=None, reason="only the customer can answer this question")
    if value.get("question_id") != question_id:
        return QuestionAnswer(choice=None, reason="the answer is for a different question")
    picked = value.get("value")
    choice = next((c for c in question.choices if isinstance(picked, str) and picked == c.value), None)
    if choice is None:
        return QuestionAnswer(choice=None, reason="the answer is not one of the choices")
    return QuestionAnswer(choice=choice)


def _plain(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold().rstrip(".!")


def parse_choice_text(text: str, choices: Sequence[Mapping[str, Any]]) -> str | None:
    """Map a typed reply to a choice value, or None (then the question is asked again).

    Anchored: the whole reply must be the choice's number ("2") or its exact label, case and
    spacing aside; "2 but also health" or a sentence that merely mentions a reason is no answer.
    """
    reply = _plain(text)
    if not reply:
        return None
    for index, choice in enumerate(choices, start=1):
        if reply == str(index) or reply == _plain(str(choice.get("label", ""))):
            return str(choice.get("value"))
    return None


def ask_stated_facts(
    *, domain: Domain, audit: AuditLog, tool: str, args: Mapping[str, Any], call_id: str,
    user_id: str | None, actor: str, thread_id: str | None, conversation: Mapping[str, Any],
) -> dict[str, Any]:
    """Ask the customer what the rules for ``tool`` need; return the answers as facts.

    Questions run in the domain's order; each ``when`` sees the facts computed with the answers
    given so far, so a later question (e.g. "do you dispute the refusal?") is asked only when
    the earlier answer made it matter. A fact already in ``conversation`` is not asked again:
    only this function puts those keys there (a reviewer's edited call re-enters the guard).

    Returns:
        ``{fact: value}`` for each question asked and answered; the caller merges it into the
        conversation facts before the guardrails' facts are computed.
    """
    stated: dict[str, Any] = {}
    for question in domain.stated_questions(tool):
        if question.fact in conversation:
            continue
        if question.when.strip() != "true":
            facts = domain.facts(tool, args, user_id=user_id,
                                 conversation={**conversation, **stated})
            try:
                needed = _condition(question.when).test({"args": dict(args), "facts": facts})
            except CelError:
                needed = True  # when in doubt, ask
            if not needed:
                continue
        stated[question.fact] = _ask(
            question, tool=tool, call_id=call_id, user_id=user_id, actor=actor,
            thread_id=thread_id, audit=audit,
        )
    return stated


@lru_cache(maxsize=256)
def _condition(source: str) -> Condition:
    """Compile a question's ``when`` once per process (a domain's questions are a fixed, small set)."""
    return Condition.compile(source)


def _ask(
    question: StatedQuestion, *, tool: str, call_id: str, user_id: str | None, actor: str,
    thread_id: str | None, audit: AuditLog,
) -> Any:
    payload = question_payload(question, tool=tool, call_id=call_id)
    notice = ""
    # Each iteration is its own interrupt; on resume LangGraph replays earlier answers in
    # order, so a refused answer leads to the same question again, never to a default.
    while True:
        shown: QuestionRequest = {**payload, "notice": notice} if notice else payload
        try:
            raw = interrupt(shown)
        except GraphInterrupt:
            audit.append("question.asked", actor=actor, thread_id=thread_id, tool=tool,
                         payload={"tool_call_id": call_id, "question_id": payload["id"]})
            raise
        answer = parse_question_resume(raw, question=question, question_id=payload["id"],
                                       user_id=user_id)
        if answer.choice is not None:
            return answer.choice.fact
        notice = f"Answer not accepted ({answer.reason}); please pick one of the choices."
