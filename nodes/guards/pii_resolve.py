"""Resolve the recognisers' raw results into the spans to mask: allow lists, names, overlaps.

Drops results on the domain's identifiers and the policy's allowed terms, grows and trims
PERSON spans to a name's shape (:func:`_extend_person`, :func:`_trim_person`), and keeps one
span per stretch of text (same type: the union; different types: score, length, priority).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from presidio_analyzer import RecognizerResult

from nodes.guards import pii_words
from nodes.guards.bounds import CHUNK_CHARS
from nodes.guards.pii_recognizers import _NAME_WORD
from nodes.guards.pii_words import _EDGE_PUNCT, _core, _is_name_candidate
from nodes.guards.vault import PLACEHOLDER_RE

__all__ = ["Span"]


# Which entity wins when two different types claim overlapping text with equal scores
# (e.g. "SSN 022717560" is also a valid German phone number).
_PRIORITY = {
    name: i
    for i, name in enumerate(
        (
            "CREDIT_CARD",
            "IBAN_CODE",
            "EMAIL_ADDRESS",
            "US_SSN",
            "PASSPORT",
            "US_PASSPORT",
            "DATE_OF_BIRTH",
            "CARD_EXPIRY",
            "CARD_CVV",
            "PHONE_NUMBER",
            "IP_ADDRESS",
            "PERSON",
        )
    )
}
# Types whose detection is validated by a checksum or a strict syntax: they may overlap
# an airline-identifier shape (e.g. a user id inside an e-mail address) and still win.
_VALIDATED = frozenset({"CREDIT_CARD", "IBAN_CODE", "EMAIL_ADDRESS"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Span:
    """One detected PII span (positions in the analysed text; no value kept).

    Attributes:
        entity_type: E.g. ``EMAIL_ADDRESS``.
        start: Start offset in the analysed text.
        end: End offset (exclusive).
        score: Detection confidence, 0..1.
    """

    entity_type: str
    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class _Allowed:
    """What the policy says is never PII: terms (names of places) and identifier patterns."""

    terms: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = ()

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Return the kept spans: each pattern's ``id`` group if it has one, else the match."""
        found = []
        for pattern in self.patterns:
            group = "id" if "id" in pattern.groupindex else 0
            for match in pattern.finditer(text):
                if match.group(group):
                    found.append(match.span(group))
        return found


# A name the customer gives the agent ("Can I call you Bob?") is not the customer's data.
_ADDRESSEE_RE = re.compile(r"(?i:\b(?:call|calling|name|naming)\s+you|\bare\s+you|\byou\s+are|\byou['’]re)[ \t]+\Z")


def _person_is_plausible(value: str) -> bool:
    words = value.split()
    if not words or any(ch.isdigit() or ch in "_@<>/" for ch in value):
        return False
    return not all(w.strip(_EDGE_PUNCT).lower() in pii_words._NOT_NAME_WORDS for w in words)


_NEXT_WORD_RE = re.compile(rf"[ \t]+({_NAME_WORD})")
_PREV_WORD_RE = re.compile(rf"({_NAME_WORD})[ \t]+$")


def _extend_person(text: str, start: int, end: int) -> tuple[int, int]:
    """Grow a PERSON span over adjacent capitalised words the model left out.

    The small model often tags two of three name parts ("Nguyễn Văn" of "Nguyễn Văn An").
    """
    for _ in range(2):
        after = _NEXT_WORD_RE.match(text, end)
        if not after or not _is_name_candidate(after.group(1), False):
            break
        end = after.end(1)
    for _ in range(2):
        before = _PREV_WORD_RE.search(text, max(0, start - 40), start)
        if not before or not _is_name_candidate(before.group(1), True):
            break
        start = before.start(1)
    return start, end


def _trim_person(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop openers and non-name words the model glued to a name ("Check Sydney")."""
    words = list(re.finditer(r"\S+", text[start:end]))
    while len(words) > 1 and _core(words[0].group()).lower() in pii_words._TRIM_LEADING:
        words.pop(0)
    while len(words) > 1 and (
        _core(words[-1].group()).lower() in pii_words._NOT_NAME_WORDS or words[-1].group()[0].islower()
    ):
        words.pop()  # a capitalised stop word may be a name part ("Nguyễn Văn An")
    return start + words[0].start(), start + words[-1].end()


# Words that make a place of the allowed place before or after them ("Gatwick North").
_PLACE_QUALIFIERS = frozenset(
    """
    north south east west central terminal terminals airport international intl express station
    aéroport aeroport aeropuerto aeroporto flughafen lounge
    """.split()
)
# A single word the French model tags PER that is a verb form, not a name: "Remboursez",
# "Pouvez-vous", "Dites-moi" (second-person plural and first-person plural endings, or a
# verb joined to its pronoun).
_VERB_FORM_RE = re.compile(
    r"(?i)\A\w+(?:ez|ons)\Z|\A\w+-(?:vous|moi|nous|toi|le|la|les|lui|leur|il|elle|ils|elles|on|y|en)\Z"
)


def _by_name_cue(result: RecognizerResult) -> bool:
    return (result.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY) == "NameCueRecognizer"


def _shouted(text: str) -> bool:
    letters = [ch for ch in text[:CHUNK_CHARS] if ch.isalpha()]
    return bool(letters) and sum(ch.isupper() for ch in letters) > 0.8 * len(letters)


def _looks_like_verb(value: str) -> bool:
    return " " not in value.strip() and _VERB_FORM_RE.match(value.strip()) is not None


def _is_place_name(value: str, allow: frozenset[str]) -> bool:
    """Return True when ``value`` (lower case, single-spaced) is an allowed place, qualified or joined."""
    rest = f" {value} "
    for term in allow:
        if " " in term and f" {term} " in rest:
            rest = rest.replace(f" {term} ", " # ")
    words = [w if w == "#" else _core(w).lower() for w in rest.split()]
    named = any(w == "#" or w in allow or w in pii_words._PLACES for w in words)
    return named and all(w == "#" or w in allow or w in pii_words._PLACES or w in _PLACE_QUALIFIERS for w in words)


def _resolve(
    text: str, results: Sequence[RecognizerResult], allowed: _Allowed = _Allowed(), language: str = "en"
) -> list[Span]:
    if not results:
        return []  # nothing to check against identifiers: skip their scans
    allow = allowed.terms
    protected = [m.span() for m in pii_words._PROTECTED_RE.finditer(text)]
    protected += [m.span("v") for value_re in pii_words._VALUE_RES for m in value_re.finditer(text)]
    # The policy's identifiers block every type but the checksum-validated ones, in any span.
    by_policy = allowed.spans(text)
    placeholders = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
    candidates: list[Span] = []
    for r in results:
        start, end = int(r.start), int(r.end)
        # Trim whitespace the recogniser may have included so placeholders sit tight.
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start >= end:
            continue
        blockers = placeholders if r.entity_type in _VALIDATED else protected
        if r.entity_type == "PERSON" and (len(text[start:end].split()) > 1 or (_by_name_cue(r) and _shouted(text))):
            # "ANNA MARTIN", "JOHN LEE", "THANKS, JOANNA" (a cue in a shouted message): a caps
            # word of letters only is a name (part) here, not a booking code or an airport;
            # identifiers with digits still block, and so do caps words after a cue in an
            # ordinary message ("It's ORD.").
            blockers = [
                (b_start, b_end)
                for b_start, b_end in blockers
                if not text[b_start:b_end].isalpha()
            ]
        if r.entity_type not in _VALIDATED:
            blockers = blockers + by_policy
        if any(start < b_end and b_start < end for b_start, b_end in blockers):
            continue
        if r.entity_type == "PERSON":
            if not _person_is_plausible(text[start:end]):
                continue
            from_ner = (r.recognition_metadata or {}).get(
                RecognizerResult.RECOGNIZER_NAME_KEY
            ) == "SpacyRecognizer"
            start, end = _extend_person(text, start, end)
            if from_ner:
                start, end = _trim_person(text, start, end)
                if _ADDRESSEE_RE.search(text, max(0, start - 20), start):
                    continue
                if " " not in text[start:end] and not text[start].isupper():
                    continue  # the model alone, one lower-case word: not a name's shape ("volo")
                if language != "en" and _looks_like_verb(text[start:end]):
                    continue  # the French model takes a capitalised verb for a name ("Remboursez")
            value = " ".join(text[start:end].lower().split())
            if not value or value in pii_words._PLACES or value in allow:
                continue
            if allow and _is_place_name(value, allow):
                continue  # "Heathrow Gatwick", "Heathrow T5", "Gatwick North", "Roissy Charles de Gaulle"
            if text[start:end].endswith(("'s", "’s")):
                end -= 2  # "Kevin's" and "Kevin" must share a placeholder
        candidates.append(Span(entity_type=r.entity_type, start=start, end=end, score=float(r.score)))
    # Same type overlapping (e.g. NER "Maria Lopez" and the cue recogniser's "Maria Lopez
    # Diaz"): mask the union. Different types: the higher score, then the longer, wins.
    merged: list[Span] = []
    for span in sorted(candidates, key=lambda s: (s.entity_type, s.start, -s.end)):
        last = merged[-1] if merged else None
        if last and last.entity_type == span.entity_type and span.start < last.end:
            merged[-1] = Span(
                entity_type=last.entity_type,
                start=last.start,
                end=max(last.end, span.end),
                score=max(last.score, span.score),
            )
        else:
            merged.append(span)
    chosen: list[Span] = []
    for span in sorted(
        merged,
        key=lambda s: (-s.score, -(s.end - s.start), _PRIORITY.get(s.entity_type, 99), s.start),
    ):
        if all(span.end <= c.start or c.end <= span.start for c in chosen):
            chosen.append(span)
    chosen.sort(key=lambda s: s.start)
    return chosen
