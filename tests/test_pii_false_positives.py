"""Benign words the PII layer must not mask, and the names next to them it still must.

Each case below was masked on main (``python -m evals.heldout --show-masked`` lists them):
a reservation id typed in title case ("reservation Vaaoxj") reached the planner as a
``<PERSON_n>``, places and terms ("Porto", "Schengen", "Java") and a name the customer gives
the agent ("Can I call you Bob?") were read as people by the English NER, a sign-off verb
("Thank you! Talk soon.") as a signature, a route ("Return ORD-LAX") as a name, a German noun
before "geboren" ("letzte Woche geboren") as a name, and travel dates after a comma as dates
of birth. The real Presidio analyzer runs; the airline's allow-patterns come from the
shipped policy.
"""

from __future__ import annotations

from typing import Any

import pytest

from graph.policy import load_policy
from nodes.guards.base import Action, GuardContext
from nodes.guards.pii import PiiLayer, detect
from nodes.guards.vault import InMemoryVault
from ui.scan import scan_policy_path


def _policy_pii_params() -> dict[str, Any]:
    guards = load_policy(scan_policy_path(None)).guards
    return next(dict(c.params) for c in guards.input if c.layer == "pii")


@pytest.fixture(scope="module")
def layer() -> PiiLayer:
    return PiiLayer(preload=True, **_policy_pii_params())


def _masked(layer: PiiLayer, text: str) -> str:
    ctx = GuardContext(direction="input", thread_id="t-fp", vault=InMemoryVault(thread_id="t-fp"))
    result = layer.check(text, ctx)
    return result.text if result.action is Action.MODIFY and result.text is not None else text


@pytest.mark.parametrize(
    "text",
    [
        "Show me reservation Vaaoxj",
        "Can you show me reservation Vaaoxj please?",
        "My reservation is Vaaoxj.",
        "reservation number: Zfaoyq, can I add a bag?",
        "Cancel reservation Hxbqtm now",
    ],
)
def test_reservation_id_in_any_case_reaches_the_planner(layer: PiiLayer, text: str) -> None:
    assert _masked(layer, text) == text


def test_allow_patterns_are_case_insensitive_and_keep_only_their_group() -> None:
    text = "Look up RESERVATION vaaoxj for Robert Smith"
    spans = detect(text, allow_patterns=[r"\breservation\s+(?P<id>[a-z0-9]{6})\b"])
    assert [text[s.start : s.end] for s in spans] == ["Robert Smith"]
    # Without the pattern the same id in title case is read as a name.
    plain = "Show me reservation Vaaoxj"
    assert "Vaaoxj" in [plain[s.start : s.end] for s in detect(plain)]


def test_allow_pattern_does_not_hide_a_name_it_does_not_cover(layer: PiiLayer) -> None:
    text = "Add my husband Thomas Becker to reservation Vaaoxj"
    masked = _masked(layer, text)
    assert "Thomas Becker" not in masked
    assert "Vaaoxj" in masked


@pytest.mark.parametrize(
    ("pattern", "error"),
    [("(unclosed", "allow_patterns"), (r"(?P<id>[a-z]*)", "empty")],
)
def test_bad_allow_patterns_are_refused_clearly(pattern: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        PiiLayer(allow_patterns=[pattern])


@pytest.mark.parametrize(
    "text",
    [
        "Can I call you Bob?",
        "What's a nice day trip from Porto?",
        "Do I need a transit visa in Germany if I have a Schengen visa?",
        "How do I reverse a linked list in Java?",
        "Thank you! Talk soon.",
        "Thanks! Talk to you later.",
        "My itinerary says: Outbound LAX-ORD 08:10, Return ORD-LAX 19:45, Reservation ID 8JKD2P. "
        "Can I change the return to the next day?",
        "I need to change it to the next day, May 24, 2024, and I'm looking for the cheapest option.",
        "Actually, May 17, 2024, would be a good date for the departure.",
        "Unser Baby ist letzte Woche geboren, wie füge ich es der Buchung hinzu?",
        "Unser Baby wurde im Mai geboren, braucht es einen eigenen Sitz?",
        "Wir reisen mit Baby, geboren letzten Monat. Was müssen wir beachten?",
    ],
)
def test_benign_message_is_not_altered(layer: PiiLayer, text: str) -> None:
    assert _masked(layer, text) == text


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("My friend Bob is flying with me.", "Bob"),
        ("Please remove Sophia from my upcoming flights.", "Sophia"),
        ("Could you upgrade Noah to business class?", "Noah"),
        ("Thanks,\nMaria Lopez", "Maria Lopez"),
        ("Thank you! Julia", "Julia"),
        ("Leo Schmidt, 14/02/2016", "14/02/2016"),
        ("Passengers: Anna Weber (12.03.2019) and Max Weber (01.07.2021)", "12.03.2019"),
        ("Mein Sohn Leon, geboren am 3. Mai 2019, fliegt mit.", "3. Mai 2019"),
        ("Book it for Porto Smith please", "Porto Smith"),
    ],
)
def test_names_and_dates_of_birth_are_still_masked(layer: PiiLayer, text: str, name: str) -> None:
    assert name not in _masked(layer, text)


def test_english_ner_alone_does_not_mask_one_lower_case_word() -> None:
    """Even where every text is read as English, a lone lower-case word is not a name's shape."""
    text = "Vorrei spostare il mio volo per Roma a venerdì."
    assert [text[s.start : s.end] for s in detect(text, language="en")] == []


def test_a_curly_apostrophe_opener_stays_outside_the_name(layer: PiiLayer) -> None:
    masked = _masked(layer, "I’m Amelia Sanchez and I'm having a change of plans.")
    assert masked.startswith("I’m <PERSON_")


def test_heldout_report_lists_what_was_masked_in_benign_rows() -> None:
    """``evals.heldout --show-masked`` names the masked words and their placeholder types."""
    from evals.heldout import evaluate, render_masked

    rows = [
        {"text": "My friend Bob is flying with me on reservation Vaaoxj.", "label": "benign", "lang": "en"},
        {"text": "What's a nice day trip from Porto?", "label": "benign", "lang": "en"},
    ]
    report = evaluate({"probe": rows})
    assert [m["masked"] for m in report["masked_benign"]] == [[{"placeholder": "<PERSON_1>", "value": "Bob"}]]
    assert "'Bob'-><PERSON_1>" in render_masked(report)
