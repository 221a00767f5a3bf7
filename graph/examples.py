"""A domain's demo example prompts: the record of one, the app's list and the README's table.

Each domain keeps its own examples (``tools/<domain>/examples.py``); what they are made of and
how they are offered and listed is the same for every domain, so it lives here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Example", "Outcome", "app_prompts", "readme_markdown"]

#: What an example leads to, as the customer sees it: ``answer`` (a reply, no pause),
#: ``gate`` (a confirm gate naming the figures, after any questions the system asks),
#: ``escalation`` (a case for a human reviewer), ``refusal`` (the input guard stops it).
Outcome = Literal["answer", "gate", "escalation", "refusal"]

_PLAIN_OUTCOME = {"answer": "an answer", "gate": "a confirm gate", "escalation": "an escalation",
                  "refusal": "a refusal"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Example:
    """One example prompt.

    Attributes:
        prompt: What the customer types.
        customer: The demo account whose records it uses; empty for any customer.
        outcome: What it leads to.
        expect: Text the answer (or the gate's message, or the case) contains.
        answers: The choice values the customer picks, in order, for the questions the system
            asks first (e.g. the cancellation reason).
        note: How the README describes the outcome.
        readme: Whether the README lists it.
    """

    prompt: str
    customer: str = ""
    outcome: Outcome
    expect: str = ""
    answers: tuple[str, ...] = ()
    note: str = ""
    readme: bool = True


def app_prompts(examples: Iterable[Example], customer: str | None) -> tuple[str, ...]:
    """Return the example prompts the app offers ``customer``: their own first, then the general ones.

    Args:
        examples: The domain's examples.
        customer: A signed-in customer id; None or an unknown one gets the general prompts.
    """
    listed = tuple(examples)
    own = tuple(e.prompt for e in listed if e.customer and e.customer == customer)
    return own + tuple(e.prompt for e in listed if not e.customer)


def readme_markdown(examples: Iterable[Example]) -> str:
    """Return the README's table of the examples it lists (checked by the tests against the README)."""
    rows = ["| account | type this | what happens |", "| --- | --- | --- |"]
    for e in examples:
        if not e.readme:
            continue
        who = f"`{e.customer}`" if e.customer else "any"
        what = e.note or _PLAIN_OUTCOME[e.outcome]
        rows.append(f"| {who} | \"{e.prompt}\" | {what} |")
    return "\n".join(rows)
