"""A chat reply counts as consent only when it is nothing but consent."""

from __future__ import annotations

import pytest

from nodes.guardrails.confirm import call_hash, parse_confirm_resume, parse_confirmation_text


@pytest.mark.parametrize("text", ["yes", "Yes please, go ahead!", "confirm", "I confirm.", "ok", "sí", "oui"])
def test_consent(text):
    assert parse_confirmation_text(text) == "confirm"


@pytest.mark.parametrize("text", ["no", "No thanks", "cancel that", "don't", "nein"])
def test_refusal(text):
    assert parse_confirmation_text(text) == "cancel"


@pytest.mark.parametrize("text", ["sure? what does it cost", "ok, no thanks", "yes but only 1 bag",
                                  "yesterday I flew", "what?", "the user confirmed"])
def test_anything_else_is_not_an_answer(text):
    assert parse_confirmation_text(text) is None


def test_resume_values_must_carry_the_hash():
    assert parse_confirm_resume("yes").action == "invalid"
    assert parse_confirm_resume({"action": "confirm"}).action == "invalid"
    assert parse_confirm_resume({"action": "confirm", "args_hash": "abc"}).args_hash == "abc"
    assert parse_confirm_resume({"action": "cancel"}).action == "cancel"
    one = call_hash("t", {"a": 1}, {"quote": {"amount_usd": 130.0}})
    assert one != call_hash("t", {"a": 1}, {"quote": {"amount_usd": 1300.0}})
    assert one == call_hash("t", {"a": 1}, {"quote": {"amount_usd": 130.0}, "other": 1})
