"""PII layer: real Presidio + spaCy, no network, placeholders, no raw values in results."""

from __future__ import annotations

import json
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from presidio_analyzer.nlp_engine import SpacyNlpEngine

from nodes.guards.base import Action, GuardContext, GuardResult
from nodes.guards.pii import (
    DISCARDED_ENTITIES,
    NLP_CONFIGURATION,
    SPACY_MODEL,
    SUPPORTED_ENTITIES,
    PiiLayer,
    detect,
    get_analyzer,
    mask_text,
    ner_windows,
    unmask,
)
from nodes.guards.vault import InMemoryVault

# (entity type, text, the raw value that must disappear)
POSITIVES = [
    ("CREDIT_CARD", "Please charge 4111 1111 1111 1111 for the bag.", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "card 5555-5555-5555-4444 please", "5555-5555-5555-4444"),
    ("CREDIT_CARD", "my amex is 378282246310005", "378282246310005"),
    ("CREDIT_CARD", "new Mastercard 2223 0031 2200 3222", "2223 0031 2200 3222"),
    ("CARD_CVV", "the cvv is 737", "737"),
    ("CARD_CVV", "security code: 4321", "4321"),
    ("CARD_EXPIRY", "it expires 04/27", "04/27"),
    ("CARD_EXPIRY", "exp. 11/2029", "11/2029"),
    ("EMAIL_ADDRESS", "write to maria.g+trip@example.co.uk", "maria.g+trip@example.co.uk"),
    ("PHONE_NUMBER", "call me at (415) 555-0134", "(415) 555-0134"),
    ("PHONE_NUMBER", "my number is +44 20 7946 0958", "+44 20 7946 0958"),
    ("PHONE_NUMBER", "whatsapp +91 98765 43210", "+91 98765 43210"),
    ("US_SSN", "my SSN is 536-22-1234", "536-22-1234"),
    ("US_SSN", "social security number 301458812", "301458812"),
    ("IBAN_CODE", "IBAN DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00"),
    ("IBAN_CODE", "wire it to GB82WEST12345698765432", "GB82WEST12345698765432"),
    ("IP_ADDRESS", "blocked from 203.0.113.45 again", "203.0.113.45"),
    ("PASSPORT", "passport number X98765432, German", "X98765432"),
    ("PASSPORT", "her passport is C01X00T47", "C01X00T47"),
    ("DATE_OF_BIRTH", "I was born on March 3, 1985", "March 3, 1985"),
    ("DATE_OF_BIRTH", "DOB: 1969-12-31", "1969-12-31"),
    ("PERSON", "Hi, this is Maria Gonzalez from Boston.", "Maria Gonzalez"),
    ("PERSON", "my name is priya sharma", "priya sharma"),
    ("PERSON", "Passenger: Nguyễn Văn An, seat 12C", "Nguyễn Văn An"),
    ("PERSON", "Please add my wife Zoë Müller to the booking.", "Zoë Müller"),
]

# Airline identifiers and ordinary travel details that must stay visible.
NEGATIVES = [
    "Change reservation ZFA04Y to flight HAT123 from JFK to LAX on 2024-05-20.",
    "Reservations VAAOXJ and 4WQ150, please cancel both.",
    "My user id is mia_li_3668.",
    "Pay with credit_card_4421486, then gift_card_7219012 and certificate_3235170.",
    "Flight HAT271 leaves at 10:30 from gate C22 on May 17.",
    "The fare went from $1,234.56 to $987.00, booked on 05/15/2024.",
    "My credit card ending in 7334 was charged twice.",
    "My e-ticket number is 0168048393197.",
    "I fly from Boston to Las Vegas next Friday in Basic Economy.",
    "The security code on your website does not work.",
    "My passport expires next year.",
    "I have 3 checked bags and 25,000 miles.",
    "I'm a Gold member flying SFO to SEA on the 15th.",
]


@pytest.fixture(scope="module")
def layer() -> PiiLayer:
    return PiiLayer(preload=True)


def _ctx(vault: Any = None) -> GuardContext:
    return GuardContext(direction="input", thread_id="t-1", vault=vault)


def _dump(result: GuardResult) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False) + repr(result.reason)


@pytest.mark.parametrize(("entity", "text", "raw"), POSITIVES)
def test_each_entity_type_is_masked(layer: PiiLayer, entity: str, text: str, raw: str) -> None:
    vault = InMemoryVault()
    result = layer.check(text, _ctx(vault))
    assert result.action is Action.MODIFY
    assert result.text is not None
    assert raw not in result.text
    assert result.metadata["entities"].get(entity) == 1
    assert raw not in _dump(result)
    if entity in DISCARDED_ENTITIES:
        # Never kept, even in the vault: the text says it was removed.
        assert DISCARDED_ENTITIES[entity] in result.text and vault.entries() == []
        return
    assert f"<{entity}_1>" in result.text, result.text
    assert vault.get(f"<{entity}_1>") == raw


def test_every_supported_entity_has_a_positive_case() -> None:
    covered = {entity for entity, _, _ in POSITIVES}
    assert covered >= set(SUPPORTED_ENTITIES) - {"US_PASSPORT"}


def test_us_passport_recognizer_is_context_gated() -> None:
    spans = detect("US passport 912803456 for the booking")
    assert [s.entity_type for s in spans] in (["PASSPORT"], ["US_PASSPORT"])
    assert detect("order 912803456 for the booking") == []


@pytest.mark.parametrize("text", NEGATIVES)
def test_airline_identifiers_and_travel_details_are_not_masked(layer: PiiLayer, text: str) -> None:
    result = layer.check(text, _ctx(InMemoryVault()))
    assert result.action is Action.ALLOW, (result.metadata, detect(text))
    assert result.text is None
    assert result.metadata["entities"] == {}


def test_identifiers_survive_next_to_pii(layer: PiiLayer) -> None:
    text = (
        "I'm Mia Li (mia_li_3668), use credit_card_4421486 or 4111111111111111 for ZFA04Y "
        "on HAT123 JFK-LAX, email mia.li3818@example.com"
    )
    result = layer.check(text, _ctx(InMemoryVault()))
    assert result.text is not None
    for kept in ("mia_li_3668", "credit_card_4421486", "ZFA04Y", "HAT123", "JFK", "LAX"):
        assert kept in result.text
    for gone in ("Mia Li", "4111111111111111", "mia.li3818@example.com"):
        assert gone not in result.text


def test_same_value_gets_the_same_placeholder_within_a_thread(layer: PiiLayer) -> None:
    vault = InMemoryVault(thread_id="t-1")
    first = layer.check("email maria@example.com or maria@example.com", _ctx(vault))
    assert first.text == "email <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_1>"
    assert first.metadata["entities"] == {"EMAIL_ADDRESS": 2}
    second = layer.check("Actually MARIA@example.com, not bob@example.com", _ctx(vault))
    assert second.text == "Actually <EMAIL_ADDRESS_1>, not <EMAIL_ADDRESS_2>"
    card = layer.check("card 4111 1111 1111 1111", _ctx(vault))
    again = layer.check("card 4111-1111-1111-1111", _ctx(vault))
    assert card.text == again.text == "card <CREDIT_CARD_1>"


def test_other_threads_number_independently(layer: PiiLayer) -> None:
    a, b = InMemoryVault(thread_id="a"), InMemoryVault(thread_id="b")
    layer.check("bob@example.com", _ctx(a))
    result = layer.check("alice@example.com", _ctx(b))
    assert result.text == "<EMAIL_ADDRESS_1>"
    assert b.get("<EMAIL_ADDRESS_1>") == "alice@example.com"
    assert a.get("<EMAIL_ADDRESS_1>") == "bob@example.com"


def test_without_a_vault_placeholders_are_consistent_within_the_text(layer: PiiLayer) -> None:
    result = layer.check("a@example.com b@example.com a@example.com", _ctx())
    assert result.text == "<EMAIL_ADDRESS_1> <EMAIL_ADDRESS_2> <EMAIL_ADDRESS_1>"


def test_unmask_restores_the_users_values() -> None:
    vault = InMemoryVault()
    original = "I'm Maria Gonzalez, call +1 415 555 0134 about ZFA04Y"
    masked, entities = mask_text(original, vault)
    assert "Maria Gonzalez" not in masked and "415" not in masked
    assert {e.entity_type for e in entities} == {"PERSON", "PHONE_NUMBER"}
    reply = f"Done, {entities[0].placeholder}. We will call {entities[1].placeholder}."
    assert unmask(reply, vault) == "Done, Maria Gonzalez. We will call +1 415 555 0134."
    assert unmask(reply, None) == reply


def test_entities_carry_positions_not_values() -> None:
    text = "email maria@example.com now"
    masked, entities = mask_text(text)
    assert masked == "email <EMAIL_ADDRESS_1> now"
    (entity,) = entities
    assert (entity.entity_type, entity.placeholder) == ("EMAIL_ADDRESS", "<EMAIL_ADDRESS_1>")
    assert text[entity.start : entity.end] == "maria@example.com"
    assert "maria" not in repr(entity)


def test_results_and_logs_never_contain_raw_values(layer: PiiLayer, caplog: pytest.LogCaptureFixture) -> None:
    raws = [
        "Maria Gonzalez",
        "4111 1111 1111 1111",
        "maria@example.com",
        "536-22-1234",
        "+44 20 7946 0958",
        "X98765432",
        "1985-03-03",
        "DE89 3704 0044 0532 0130 00",
    ]
    text = (
        "I'm Maria Gonzalez, card 4111 1111 1111 1111, maria@example.com, SSN 536-22-1234, "
        "+44 20 7946 0958, passport X98765432, DOB 1985-03-03, IBAN DE89 3704 0044 0532 0130 00"
    )
    with caplog.at_level(logging.DEBUG):
        for action in ("modify", "block", "escalate"):
            result = PiiLayer(action_on_detect=action).check(text, _ctx(InMemoryVault()))
            dumped = _dump(result) + repr(result.metadata) + repr(dict(result.scores))
            for raw in raws:
                assert raw not in dumped
            assert result.text is not None
            for raw in raws:
                assert raw not in result.text
    for raw in raws:
        assert raw not in caplog.text


def test_actions(layer: PiiLayer) -> None:
    clean = layer.check("Change ZFA04Y to tomorrow please", _ctx())
    assert clean.action is Action.ALLOW and clean.reason == "" and clean.layer == "pii"
    dirty = layer.check("mail me at a@example.com", _ctx())
    assert dirty.action is Action.MODIFY and dirty.reason == "pii_masked"
    assert dirty.scores["EMAIL_ADDRESS"] == pytest.approx(1.0)
    assert dirty.latency_ms > 0
    blocked = PiiLayer(action_on_detect="block").check("mail me at a@example.com", _ctx())
    assert blocked.action is Action.BLOCK and blocked.reason == "pii_detected"
    assert blocked.text == "mail me at <EMAIL_ADDRESS_1>"
    escalated = PiiLayer(action_on_detect="escalate").check("a@example.com", _ctx())
    assert escalated.action is Action.ESCALATE


def test_entity_subset_and_threshold() -> None:
    text = "I'm Maria Gonzalez, mail maria@example.com, call 415-555-0134"
    only_email = PiiLayer(entities=["EMAIL_ADDRESS"]).check(text, _ctx())
    assert only_email.text == "I'm Maria Gonzalez, mail <EMAIL_ADDRESS_1>, call 415-555-0134"
    strict = PiiLayer(score_threshold=0.9).check(text, _ctx())
    assert strict.metadata["entities"] == {"EMAIL_ADDRESS": 1}  # phone (0.4), name (<0.9) kept


@pytest.mark.parametrize(
    "kwargs",
    [
        {"entities": ["NOT_AN_ENTITY"]},
        {"score_threshold": 1.5},
        {"language": "de"},
        {"action_on_detect": "allow"},
        {"ner": "sometimes"},
        {"ner_window": 0},
    ],
)
def test_bad_parameters_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PiiLayer(**kwargs)


def test_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        PiiLayer(["EMAIL_ADDRESS"])  # type: ignore[misc]


def test_registered_as_pii() -> None:
    from nodes.guards.base import create_guard

    guard = create_guard("pii", score_threshold=0.5)
    assert isinstance(guard, PiiLayer)
    assert guard.name == "pii"


def test_existing_placeholders_are_left_alone(layer: PiiLayer) -> None:
    vault = InMemoryVault()
    vault.put("PERSON", "Maria Gonzalez")
    result = layer.check("Book <PERSON_1> on HAT123, email <EMAIL_ADDRESS_3>", _ctx(vault))
    assert result.action is Action.ALLOW


def test_empty_and_whitespace(layer: PiiLayer) -> None:
    assert layer.check("", _ctx()).action is Action.ALLOW
    assert layer.check("   \n ", _ctx()).action is Action.ALLOW


def test_analyzer_is_built_once_and_explicitly_configured() -> None:
    with ThreadPoolExecutor(8) as ex:
        analyzers = list(ex.map(lambda _: get_analyzer(), range(16)))
    assert all(a is analyzers[0] for a in analyzers)
    engine = analyzers[0].nlp_engine
    assert isinstance(engine, SpacyNlpEngine)
    nlp = engine.get_nlp("en")
    assert nlp.pipe_names == ["ner"]  # only NER (it has its own tok2vec)
    assert nlp.meta["name"] == SPACY_MODEL.removeprefix("en_")
    assert NLP_CONFIGURATION["models"][0]["model_name"] == SPACY_MODEL
    assert analyzers[0].supported_languages == ["en"]
    mapping = engine.ner_model_configuration.model_to_presidio_entity_mapping
    ignored = engine.ner_model_configuration.labels_to_ignore
    assert mapping is not None and ignored is not None
    assert set(mapping.values()) == {"PERSON"}
    for label in ("ORG", "GPE", "DATE", "LOC", "TIME", "MONEY"):
        assert label in ignored


def test_cities_dates_and_organisations_are_not_masked(layer: PiiLayer) -> None:
    text = "Hi, I'm flying with United from Chicago to Paris on Monday, March 4th at 9 am."
    result = layer.check(text, _ctx())
    assert result.action is Action.ALLOW, detect(text)


def test_no_network_is_used(monkeypatch: pytest.MonkeyPatch, layer: PiiLayer) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    result = layer.check("mail a.person@some-company.co.uk or b@mail.example.io", _ctx())
    assert result.metadata["entities"] == {"EMAIL_ADDRESS": 2}


def test_concurrent_checks_agree(layer: PiiLayer) -> None:
    texts = [f"I'm Maria Gonzalez, card 4111 1111 1111 1111, call 415-555-01{i:02d}" for i in range(24)]
    expected = [layer.check(t, _ctx()).text for t in texts]
    with ThreadPoolExecutor(6) as ex:
        got = list(ex.map(lambda t: layer.check(t, _ctx()).text, texts))
    assert got == expected


def test_ner_gate_skips_messages_without_possible_names(layer: PiiLayer) -> None:
    assert ner_windows("Please change my flight to May 5, reservation ZFA04Y, JFK to LAX.") == []
    assert ner_windows("Thanks! Can I also add a bag?") == []
    assert ner_windows("Please add Maria Gonzalez to the booking") != []
    assert layer.check("Please change ZFA04Y to the 5pm flight", _ctx()).metadata["ner"] == "skipped"
    ran = layer.check("Please add Maria Gonzalez to ZFA04Y", _ctx())
    assert ran.metadata["ner"] == "ran"
    assert ran.metadata["entities"] == {"PERSON": 1}


@pytest.mark.parametrize("ner", ["auto", "always"])
def test_ner_modes_find_the_same_name(ner: str) -> None:
    text = "We land at 6pm and Hannah Schmidt will pick up the tickets at the desk."
    spans = detect(text, ner=ner)  # type: ignore[arg-type]
    assert [text[s.start : s.end] for s in spans] == ["Hannah Schmidt"]
    assert detect(text, ner="never") == []


def test_cue_words_stay_visible() -> None:
    masked, _ = mask_text("card 4111111111111111 exp 04/27 cvv 123, DOB 1990-01-02")
    assert masked == ("card <CREDIT_CARD_1> exp <CARD_EXPIRY_1> cvv [card security code removed], "
                      "DOB <DATE_OF_BIRTH_1>")


@pytest.mark.postgres
def test_no_vault_stores_a_card_security_code(pool: Any) -> None:
    from nodes.guards.vault import NEVER_STORED, VaultError, VaultStore

    store = VaultStore(pool=pool, key=os.environ["AIRLOCK_VAULT_KEY"])
    for vault in (InMemoryVault(), store.for_thread("t-cvv")):
        for entity in NEVER_STORED:
            with pytest.raises(VaultError, match="never stored"):
                vault.put(entity, "737")
    assert store.for_thread("t-cvv").entries() == []
