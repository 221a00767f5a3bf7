"""The PII layer's fast paths find what the plain ones find.

* Cue patterns run case-sensitively over a folded copy of the text (``nodes.guards.casefold``):
  the fold must equate exactly the letters ``re.IGNORECASE`` equates, and every cue must give
  the same spans as before.
* Recognisers of a type whose cheap condition fails are skipped (``nodes.guards.pii_gates``):
  no recogniser may find a type whose condition fails.
* NER reads a bounded number of tokens per text (``nodes.guards.ner_budget``): past the budget,
  name candidates are masked without NER, so a name at the end of a long answer is still caught.
* Long tool results (JSON up to the 32,000-character limit) are still masked everywhere.

No test here measures time (``python -m evals.fuzz`` does); they count work or compare results.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nodes.guards.pii as pii
import nodes.guards.pii_recognizers as pii_recognizers
from evals.fuzz import SHAPES, shape_text
from evals.pii_eval import load_records
from graph.policy import load_policy
from graph.runtime import build_pipeline
from nodes.guards.base import Action, GuardContext
from nodes.guards.casefold import case_free, fold
from nodes.guards.ner_budget import NER_TOKEN_BUDGET, NerBudget, estimate_tokens
from nodes.guards.output import OutputPii
from nodes.guards.pii_gates import ENTITY_GATES, plausible_entities
from nodes.guards.vault import InMemoryVault
from tools.airline import POLICY_PATH

ROOT = Path(__file__).resolve().parent.parent
CUES = [cue for group in (pii_recognizers._NAME_PATTERNS, pii_recognizers._CVV_PATTERNS,
                          pii_recognizers._EXPIRY_PATTERNS, pii_recognizers._PASSPORT_PATTERNS,
                          pii_recognizers._DOB_PATTERNS) for cue in group]
TRICKY = "ſſKıİiIsSkKµμΣσςßẞÉéÅåǅǄǆ"


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    texts = [r.text for r in load_records()]
    texts += [shape_text(shape, 2000, seed) for shape in SHAPES for seed in range(2)]
    texts += [json.loads(line)["answer"] for line in (ROOT / "evals/data/bench_messages.jsonl").open()]
    return texts


# -- case folding ----------------------------------------------------------------------------


def _cue_letters() -> set[str]:
    letters: set[str] = set()
    for cue in CUES:
        source = re.sub(r"\\.|\(\?P<\w+>", "", cue.regex.pattern)
        letters |= {c for c in source if c.isalpha()}
    return letters


def test_fold_equates_exactly_the_letters_re_ignorecase_equates():
    everything = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    folded = fold(everything)
    assert len(folded) == len(everything)  # one character for one: offsets carry over
    for cls in (r"\w", r"\d", r"\s", r"[A-Za-z]"):
        assert [m.start() for m in re.finditer(cls, everything, re.I)] == [
            m.start() for m in re.finditer(cls, folded)], cls
    for letter in sorted(_cue_letters() | set("abcdefghijklmnopqrstuvwxyz")):
        if fold(letter) != letter:
            continue  # an upper-case letter: case_free refuses patterns that use it
        expected = [m.start() for m in re.finditer(re.escape(letter), everything, re.I)]
        assert [m.start() for m in re.finditer(re.escape(letter), folded)] == expected, letter


def test_case_free_cues_find_the_same_spans(corpus):
    for cue in CUES:
        fast = case_free(cue.regex)
        for text in corpus:
            assert [m.span() for m in fast.finditer(fold(text))] == [m.span() for m in cue.regex.finditer(text)], (
                cue.name, text[:80])


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.one_of(
    st.sampled_from(["born", "DOB", "Date of Birth", "CVV", "security code", "exp", "Expires", "passport",
                     "PASSPORT", "my name is", "Passenger 1:", "Thanks,", "here", "Geboren", "Fecha de nacimiento",
                     "4111 1111 1111 1111", "04/27", "123", "1990-01-02", "12 March 1985", "X1234567", "\n"]),
    st.text(alphabet=TRICKY + " \t\n,.:-/0123456789abcXYZ", max_size=12),
), max_size=14))
def test_case_free_cues_agree_on_generated_text(pieces):
    text = " ".join(pieces)
    text = "".join(c.upper() if i % 3 == 0 else c for i, c in enumerate(text))  # mixed case
    for cue in CUES:
        assert [m.span() for m in case_free(cue.regex).finditer(fold(text))] == [
            m.span() for m in cue.regex.finditer(text)], (cue.name, text)


@pytest.mark.parametrize("pattern", [
    re.compile(r"(?i:Born)"),          # an upper-case letter would never match folded text
    re.compile(r"born(?i:\s+on)"),     # a case-sensitive letter would match differently
    re.compile(r"[a-z]+\d"),           # a case-sensitive class with letters
    re.compile(r"(?x)born"),           # an inline flag the rewrite does not know
])
def test_case_free_refuses_what_it_cannot_prove(pattern):
    with pytest.raises(ValueError):
        case_free(pattern)


# -- gates -------------------------------------------------------------------------------------


def test_no_recogniser_finds_a_type_its_gate_rules_out(corpus):
    analyzer = pii.get_analyzer()
    engine = analyzer.nlp_engine
    checked = set()
    for text in corpus:
        artifacts, _ = engine.process(text, "en", ner="never")  # type: ignore[attr-defined]
        found = {r.entity_type for r in analyzer.analyze(text=text, language="en", nlp_artifacts=artifacts,
                                                          entities=list(pii.SUPPORTED_ENTITIES),
                                                          score_threshold=0.0)}
        assert found <= set(plausible_entities(text, found)), text[:80]
        checked |= found & set(ENTITY_GATES)
    assert checked == set(ENTITY_GATES)  # every gate was exercised by a text that has its type


def test_gates_skip_recognisers_on_text_without_digits():
    assert plausible_entities("a.a.a.a.a. Abc Abc", pii.SUPPORTED_ENTITIES) == ["PERSON"]
    assert "EMAIL_ADDRESS" in plausible_entities("x@y.org", pii.SUPPORTED_ENTITIES)
    assert "IP_ADDRESS" in plausible_entities("fe80::1", ["IP_ADDRESS"])


# -- the NER budget ----------------------------------------------------------------------------


def _answer(chars: int) -> str:
    answers = [json.loads(line)["answer"] for line in (ROOT / "evals/data/bench_messages.jsonl").open()]
    text = ""
    for i in range(10_000):
        text += answers[i % len(answers)] + "\n\n"
        if len(text) >= chars:
            break
    return text[:chars]


def test_a_real_long_answer_stays_under_the_budget_and_is_masked_as_without_it():
    text = _answer(8000)
    args = (pii.SUPPORTED_ENTITIES, pii.DEFAULT_SCORE_THRESHOLD, "auto", "auto", pii.DEFAULT_NER_WINDOW)
    budgeted = pii._detect(text, *args)
    unbounded = pii._detect(text, *args, ner_budget=None)
    assert budgeted.ner_unread == 0
    assert budgeted.spans == unbounded.spans
    assert any(s.entity_type == "PERSON" for s in budgeted.spans)


@pytest.mark.parametrize("filler", ["answer", "capitalised"])
def test_a_name_at_the_very_end_of_an_8000_character_answer_is_caught(filler):
    tail = " Please contact Maria Gonzalez"
    body = _answer(8000) if filler == "answer" else shape_text("capitalised words", 8000)
    text = body[: 8000 - len(tail)] + tail
    assert len(text) == 8000
    result = OutputPii().check(text, GuardContext(direction="output", vault=InMemoryVault()))
    assert result.action is Action.MODIFY
    assert "Maria Gonzalez" not in result.text and result.text.endswith("[PERSON]")


def test_past_the_budget_every_name_candidate_is_masked_without_ner():
    people = [("Maria", "Gonzalez"), ("John", "Smith"), ("David", "Miller"), ("Sarah", "Johnson")]
    names = " ".join(f"Please add {first} {last} to the booking." for first, last in people * 60)
    assert estimate_tokens(names) > 2 * NER_TOKEN_BUDGET
    result = pii.PiiLayer().check(names, GuardContext(vault=InMemoryVault()))
    assert result.metadata["ner_unread_windows"] > 0
    for first, last in people:  # NER finds each of them alone; past the budget the fallback does
        assert first not in result.text and last not in result.text
    # A NER budget is a count of tokens, not a time: it does not depend on the machine.
    budget = NerBudget(10)
    assert budget.take(6) and not budget.take(5) and budget.take(4) and budget.remaining == 0


# -- long tool results -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tool_result_pii() -> Any:
    guards = load_policy(POLICY_PATH).guards
    pipeline = build_pipeline(guards.tool_result, max_chars=guards.max_chars.tool_result)
    return dict(zip((s.name for s in pipeline.specs), pipeline.guards, strict=True))["pii"], pipeline.max_chars


def test_pii_inside_a_long_tool_result_json_value_is_masked(tool_result_pii):
    layer, limit = tool_result_pii
    flights = [{"flight_number": f"HAT{i % 900 + 100}", "origin": "JFK", "destination": "LAX",
                "date": "2024-05-15", "prices": {"economy": 120 + i, "business": 900 + i}} for i in range(400)]
    doc = {"flights": flights, "note": ""}
    note = "Customer asked to call +1 415 555 0134 or write to amara.horvat@example.com; card 4111 1111 1111 1111"
    while len(json.dumps(doc)) + len(note) > limit:
        flights.pop()
    doc["note"] = note
    text = json.dumps(doc)
    assert limit - 2000 < len(text) <= limit
    result = layer.check(text, GuardContext(direction="tool_result", vault=InMemoryVault()))
    masked = json.loads(result.text)
    for value in ("+1 415 555 0134", "amara.horvat@example.com", "4111 1111 1111 1111"):
        assert value not in result.text
    assert masked["flights"][0]["flight_number"] == "HAT100" and masked["flights"][-1]["origin"] == "JFK"


def test_deeply_nested_json_is_scanned_as_text_not_an_error(tool_result_pii):
    layer, _ = tool_result_pii
    text = '{"a":' * 2000 + '"write to amara.horvat@example.com"' + "}" * 2000
    result = layer.check(text, GuardContext(direction="tool_result", vault=InMemoryVault()))
    assert "amara.horvat@example.com" not in result.text
