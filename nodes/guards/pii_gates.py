"""Cheap necessary conditions for each PII type, so recognisers that cannot match are not run.

Every recogniser of a type but PERSON needs something a text without it cannot contain: an
e-mail address needs an "@", a card number four digits in a row, an IPv4 address a digit, a
dot and a digit, an IPv6 address a colon. One fast search per condition over a chunk costs
microseconds, where running a recogniser over it costs up to a millisecond (``python -m
evals.fuzz``: runs of dots, "@" and dashes). The conditions are implied by the recognisers'
own patterns (``tests/test_pii_fast.py`` checks that no recogniser finds a type whose
condition fails, on the evaluation data and on generated text).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["ENTITY_GATES", "plausible_entities"]

_DIGIT = re.compile(r"\d")
_TWO_DIGITS = re.compile(r"\d\d")
_THREE_DIGITS = re.compile(r"\d{3}")
_FOUR_DIGITS = re.compile(r"\d{4}")
_EIGHT_DIGITS = re.compile(r"\d{8}")
_DIGIT_DOT_DIGIT = re.compile(r"\d\.\d")


def _has(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda text: pattern.search(text) is not None


#: Per entity type: a test every text holding a value of that type passes. Types without an
#: entry (PERSON: NER and name cues read any words) are always looked for.
ENTITY_GATES: dict[str, Callable[[str], bool]] = {
    "EMAIL_ADDRESS": lambda text: "@" in text,
    "CREDIT_CARD": _has(_FOUR_DIGITS),  # the first group of every card pattern is four digits
    "CARD_CVV": _has(_THREE_DIGITS),
    "CARD_EXPIRY": _has(_DIGIT),
    "PHONE_NUMBER": _has(_DIGIT),
    "US_SSN": _has(_TWO_DIGITS),
    "IBAN_CODE": _has(_TWO_DIGITS),  # country code, then two check digits
    "US_PASSPORT": _has(_EIGHT_DIGITS),
    "PASSPORT": _has(_DIGIT),
    "DATE_OF_BIRTH": _has(_DIGIT),
    # IPv6 has colons ("::1", "fe80::..."); IPv4 has digit-dot-digit.
    "IP_ADDRESS": lambda text: ":" in text or _DIGIT_DOT_DIGIT.search(text) is not None,
}


def plausible_entities(text: str, entities: Iterable[str]) -> list[str]:
    """Return the entity types of ``entities`` that ``text`` could hold, in their order."""
    return [e for e in entities if (gate := ENTITY_GATES.get(e)) is None or gate(text)]
