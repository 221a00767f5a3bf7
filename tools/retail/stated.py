"""Customer-stated facts of the store: what only the customer can tell us, asked by the system.

A customer who disputes a refusal (an order that is no longer pending cannot be cancelled; one
not yet delivered cannot be returned or exchanged) goes to a supervisor instead of being
refused. Whether they dispute it is theirs to say: a keyword in the chat is not that fact, so
the graph asks the question below right before the tool's guardrails, and the answer (a
button, or a reply that names one choice exactly) is the fact ``customer_disputes``.
"""

from __future__ import annotations

from collections.abc import Mapping

from graph.domain import Choice, StatedQuestion

__all__ = ["STATED_QUESTIONS", "stated_questions"]

_DISPUTE_CHOICES = (
    Choice(value="dispute", label="Yes, I dispute this: ask a supervisor", fact=True),
    Choice(value="accept", label="No, leave it as it is", fact=False),
)


def _dispute(question: str, when: str) -> StatedQuestion:
    return StatedQuestion(id="customer_disputes", fact="customer_disputes", question=question,
                          choices=_DISPUTE_CHOICES, when=when)


# Asked only about the customer's own order in a status the rule refuses but a supervisor may
# still settle: a processed (not yet shipped) order, or one not yet delivered.
STATED_QUESTIONS: Mapping[str, tuple[StatedQuestion, ...]] = {
    "cancel_pending_order": (
        _dispute(
            "This order is already being processed, so it cannot be cancelled here. "
            "Do you want a supervisor to review your case?",
            "facts.order.owned && facts.order.status == 'processed'",
        ),
    ),
    "return_delivered_order_items": (
        _dispute(
            "This order has not been delivered yet, so it cannot be returned here. "
            "Do you want a supervisor to review your case?",
            "facts.order.owned && facts.order.status == 'processed'",
        ),
    ),
}


def stated_questions(tool: str) -> tuple[StatedQuestion, ...]:
    """Return the questions asked before ``tool``'s guardrails (none for most tools)."""
    return STATED_QUESTIONS.get(tool, ())
