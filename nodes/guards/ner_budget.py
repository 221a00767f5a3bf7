"""A per-text budget of tokens for spaCy NER, so one text cannot make the PII layer slow.

NER costs about 0.07 ms a token on one core (``en_core_web_sm``), whatever the text: an
8,000-character answer made of capitalised words is ~2,000 tokens, all of them name
candidates, and NER over it alone took ~140 ms. The PII layer runs NER only on windows
around name candidates (:func:`nodes.guards.pii_nlp.ner_windows`); this module caps the tokens
those windows may hold per text (all chunks of a long text share one budget).

Windows that do not fit are not read by NER, and not left unread either: every name
candidate in them (a capitalised word that is not a known non-name, see
:func:`nodes.guards.pii_nlp.ner_windows`) is taken as a PERSON. That fails safe: recall cannot
drop, and only texts with more name candidates than the budget covers (a long list of names,
or capitalised filler) are masked more than NER would. Normal answers stay far below the
budget: the 8,000-character answer built from ``evals/data/bench_messages.jsonl`` has ~300
tokens in its windows.

Token counts are estimated before tokenising (one word, one punctuation mark: one token),
which counts at least as many tokens as spaCy makes for ordinary text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["NER_TOKEN_BUDGET", "NerBudget", "estimate_tokens", "split_windows"]

#: Tokens NER may read per text: ~45 ms on one core, so with the pattern recognisers every
#: PII layer stays under 100 ms at its length limit (``python -m evals.fuzz``).
NER_TOKEN_BUDGET = 600

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """Return an estimate (rarely below spaCy's count) of the tokens in ``text``."""
    return sum(1 for _ in _TOKEN_RE.finditer(text))


class NerBudget:
    """Tokens NER may still read for one text.

    Args:
        tokens: The budget (None: unlimited).
    """

    __slots__ = ("remaining", "spent_out")

    def __init__(self, tokens: int | None = NER_TOKEN_BUDGET) -> None:
        if tokens is not None and tokens < 0:
            raise ValueError("a NER budget cannot be negative")
        self.remaining = tokens
        #: Windows left to the fallback because the budget was spent.
        self.spent_out = 0

    def take(self, tokens: int) -> bool:
        """Spend ``tokens`` if they fit; return whether they did."""
        if self.remaining is None:
            return True
        if tokens > self.remaining:
            return False
        self.remaining -= tokens
        return True


def split_windows(
    text: str, windows: Sequence[tuple[int, int]], budget: NerBudget
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Return the windows NER reads (in order, while they fit) and those it does not.

    A window that does not fit is skipped whole; later, smaller ones may still fit.
    """
    read: list[tuple[int, int]] = []
    unread: list[tuple[int, int]] = []
    for start, end in windows:
        if budget.take(estimate_tokens(text[start:end])):
            read.append((start, end))
        else:
            unread.append((start, end))
    budget.spent_out += len(unread)
    return read, unread
