"""PII by schema: values of known keys in JSON records are masked exactly, without NER."""

from __future__ import annotations

import json

import pytest

from nodes.guards.base import Action, GuardContext
from nodes.guards.pii import PiiLayer
from nodes.guards.vault import InMemoryVault

RECORD = {"reservation_id": "VAAOXJ", "passengers": [{"first_name": "Lei", "last_name": "Rossi",
                                                       "dob": "1959-06-23"}],
          "email": "lei.rossi@example.com", "note": "call Maria Gonzalez on +1 415 555 0100",
          "flights": [{"flight_number": "HAT287", "date": "2024-05-24"}]}


def test_fields_are_masked_and_free_text_still_scanned():
    vault = InMemoryVault()
    layer = PiiLayer(fields={"first_name": "PERSON", "last_name": "PERSON", "dob": "DATE_OF_BIRTH",
                             "email": "EMAIL_ADDRESS"})
    result = layer.check(json.dumps(RECORD), GuardContext(direction="tool_result", vault=vault))
    assert result.action is Action.MODIFY
    masked = json.loads(result.text)
    pax = masked["passengers"][0]
    assert pax["first_name"].startswith("<PERSON_") and pax["dob"].startswith("<DATE_OF_BIRTH_")
    assert masked["email"].startswith("<EMAIL_ADDRESS_")
    assert "+1 415 555 0100" not in masked["note"]  # pattern recognisers still run on free text
    assert masked["reservation_id"] == "VAAOXJ" and masked["flights"] == RECORD["flights"]
    assert vault.resolve(pax["dob"]) == "1959-06-23"
    assert "Lei" not in result.text and "Rossi" not in result.text


def test_non_json_text_is_analysed_normally_and_bad_types_are_refused():
    layer = PiiLayer(fields={"email": "EMAIL_ADDRESS"})
    result = layer.check("write to lei.rossi@example.com", GuardContext(vault=InMemoryVault()))
    assert "lei.rossi@example.com" not in (result.text or "")
    with pytest.raises(ValueError, match="UPPER_SNAKE_CASE"):
        PiiLayer(fields={"email": "email"})
