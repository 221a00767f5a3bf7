"""Customer-stated facts of the airline: what only the customer can tell us, asked by the system.

The policy's rules on a cancellation reason (rule 16: insurance covers health and weather), on
compensation (rule 19: only when the customer asks for it) and on a disputed refusal need
something no database holds. Keywords found in the chat are not that fact: an unrelated remark
or an earlier turn would count. So the graph asks the question below right before the tool's
guardrails, and the answer (a button, or a reply that names one choice exactly) is the fact.
"""

from __future__ import annotations

from collections.abc import Mapping

from graph.domain import Choice, StatedQuestion

__all__ = ["STATED_QUESTIONS", "stated_questions"]

# Asked only for a cancellation the rules will actually consider (the ownership and
# already-cancelled denials come first, and a flown trip goes to a human anyway).
_CANCELLABLE = (
    "facts.reservation.owned && facts.reservation.status != 'cancelled'"
    " && !facts.reservation.any_flown"
)

STATED_QUESTIONS: Mapping[str, tuple[StatedQuestion, ...]] = {
    "cancel_reservation": (
        StatedQuestion(
            id="cancel_reason",
            fact="cancel_reason",
            question="Why do you want to cancel this reservation?",
            choices=(
                Choice(value="change_of_plan", label="My plans changed", fact="change_of_plan"),
                Choice(value="airline_cancelled", label="The airline cancelled my flight",
                       fact="airline_cancelled"),
                Choice(value="health", label="A health reason", fact="health"),
                Choice(value="weather", label="The weather", fact="weather"),
                Choice(value="other", label="Another reason", fact="other"),
            ),
            when=_CANCELLABLE,
        ),
        StatedQuestion(
            id="customer_disputes",
            fact="customer_disputes",
            question=(
                "Under our policy this reservation cannot be cancelled for a refund. "
                "Do you want a supervisor to review your case?"
            ),
            choices=(
                Choice(value="dispute", label="Yes, I dispute this: ask a supervisor", fact=True),
                Choice(value="accept", label="No, keep my reservation", fact=False),
            ),
            when=f"{_CANCELLABLE} && !facts.cancellation.eligible",
        ),
    ),
    "send_certificate": (
        StatedQuestion(
            id="user_asked_compensation",
            fact="user_asked_compensation",
            question="Are you asking us for compensation for a problem with your trip?",
            choices=(
                Choice(value="yes", label="Yes, I am asking for compensation", fact=True),
                Choice(value="no", label="No", fact=False),
            ),
            when="facts.user.exists && facts.args_user_matches",
        ),
    ),
}


def stated_questions(tool: str) -> tuple[StatedQuestion, ...]:
    """Return the questions asked before ``tool``'s guardrails (none for most tools)."""
    return STATED_QUESTIONS.get(tool, ())
