"""The PII layer on messages in German, Spanish, French, Italian and Portuguese.

The English NER model reads ordinary words of other languages as names ("Wann verfallen
meine Meilen?" became "<PERSON_5> verfallen meine <PERSON_6>?"). These tests pin that
benign messages in other languages pass unaltered, while names and dates of birth in
those languages are still masked through cues, and that English all-caps names and
sign-offs are masked while an airport on the policy's allow-list is kept.
"""

from __future__ import annotations

import pytest

from nodes.guards.base import Action, GuardContext
from nodes.guards.pii import PiiLayer, detect, detect_language, mask_text
from nodes.guards.vault import InMemoryVault


@pytest.fixture(scope="module")
def layer() -> PiiLayer:
    return PiiLayer(preload=True, allow=["Heathrow", "Gatwick"])


def _found(text: str, entity: str, **kwargs: object) -> list[str]:
    return [text[s.start : s.end] for s in detect(text, **kwargs) if s.entity_type == entity]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Wann verfallen meine Meilen? Ich habe sie letztes Jahr gesammelt.", "de"),
        ("¿Puedo llevar a mi perro en la cabina del avión?", "es"),
        ("Je voudrais annuler ma réservation pour le vol de demain.", "fr"),
        ("Posso portare il mio cane in cabina durante il volo?", "it"),
        ("Quero remarcar o meu voo para sexta-feira de manhã.", "pt"),
        ("Hi, can I move my flight to the evening departure?", "en"),
    ],
)
def test_language_is_detected(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_non_latin_text_is_undetermined() -> None:
    assert detect_language("Когда сгорают мои мили?") == "und"
    assert detect_language("12345 !!") == "und"


@pytest.mark.parametrize(
    "text",
    [
        "Wann verfallen meine Meilen?",
        "Mein Koffer ist in Frankfurt nicht angekommen, Bitte Helfen Sie mir.",
        "Guten Tag, Kann Ich Meinen Hund In Der Kabine Mitnehmen?",
        "Mi Maleta No Llegó a Bogotá, ¿Qué Hago Ahora?",
        "Quand Mes Miles Expirent-Ils ? Merci Pour Votre Aide.",
        "Ho Perso La Coincidenza A Francoforte, Cosa Posso Fare?",
        "Bom Dia, A Que Horas Abre O Balcão Em Lisboa?",
    ],
)
def test_benign_messages_in_other_languages_pass_unaltered(layer: PiiLayer, text: str) -> None:
    # Title Case on purpose: every word is a capitalised candidate for an English NER model.
    result = layer.check(text, GuardContext(vault=InMemoryVault()))
    assert result.action is Action.ALLOW, result.text
    assert result.metadata["ner"] == "skipped"


def test_english_ner_is_not_run_on_german_text() -> None:
    # Forcing English NER over the whole text shows what the detection prevents.
    text = "Gibt es WLAN an Bord?"
    assert _found(text, "PERSON", language="en", ner="always")
    assert not _found(text, "PERSON", ner="always")


@pytest.mark.parametrize(
    ("text", "names", "dobs"),
    [
        ("Hallo, mein Name ist Katrin Vogt, geboren am 14. Februar 1988.", ["Katrin Vogt"], ["14. Februar 1988"]),
        ("Die Buchung läuft auf den Namen Jürgen Hoffmann.", ["Jürgen Hoffmann"], []),
        ("Hola, me llamo Carmen Ruiz y nací el 3 de mayo de 1990.", ["Carmen Ruiz"], ["3 de mayo de 1990"]),
        ("La reserva está a nombre de Alejandro Méndez.", ["Alejandro Méndez"], []),
        ("Bonjour, je m'appelle Élodie Marchand, née le 14 juillet 1986.", ["Élodie Marchand"], ["14 juillet 1986"]),
        ("Mia moglie Francesca, data di nascita 30/01/1992, ha bisogno di aiuto.", ["Francesca"], ["30/01/1992"]),
        ("A reserva está em nome de João Pereira, data de nascimento: 15 de março de 1982.",
         ["João Pereira"], ["15 de março de 1982"]),
    ],
)
def test_names_and_dates_of_birth_in_other_languages_are_masked(
    text: str, names: list[str], dobs: list[str]
) -> None:
    assert _found(text, "PERSON") == names
    assert _found(text, "DATE_OF_BIRTH") == dobs


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("It's booked in my wife's name, Greta Lindholm, can you add my miles?", "Greta Lindholm"),
        ("BOOKING FOR MIGUEL ANGEL TORRES please, he needs an aisle seat", "MIGUEL ANGEL TORRES"),
        ("Can you check my upgrade status? Thanks, Priyanka", "Priyanka"),
        ("I still have not received the refund.\n\nKind regards,\nHAROLD FINCH", "HAROLD FINCH"),
        ("Muchas gracias,\nValentina Ortega", "Valentina Ortega"),
        ("Vielen Dank!\nViele Grüße\nMarkus Weber", "Markus Weber"),
        ("Add my daughter, her name is Zoe, to the booking.", "Zoe"),
    ],
)
def test_possessive_all_caps_and_sign_off_names_are_masked(text: str, name: str) -> None:
    assert _found(text, "PERSON") == [name]


def test_a_dob_without_a_cue_word_next_to_a_travellers_name_is_masked() -> None:
    assert _found("Infant on lap: Mila Novak, 02/05/2023", "DATE_OF_BIRTH") == ["02/05/2023"]
    assert _found("Mi hijo Leo Pérez (14/02/2016) viaja conmigo.", "DATE_OF_BIRTH") == ["14/02/2016"]
    # A travel date is not a date of birth.
    assert not _found("Can I move my flight to 14/02/2026?", "DATE_OF_BIRTH")


def test_an_allow_listed_airport_is_kept(layer: PiiLayer) -> None:
    text = "Hi, Rosalind here, my bag never arrived in Heathrow and Gatwick has no record."
    result = layer.check(text, GuardContext(vault=InMemoryVault()))
    assert result.text is not None
    assert "Heathrow" in result.text and "Gatwick" in result.text
    assert "Rosalind" not in result.text


def test_allow_list_is_the_layers_configuration_not_the_engines() -> None:
    masked, _ = mask_text("Ask Heathrow Jones at the desk", allow=["Heathrow"])
    assert "Jones" not in masked  # a name that contains an allowed word is still a name
    with pytest.raises(ValueError):
        PiiLayer(allow="Heathrow")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PiiLayer(language="de")
