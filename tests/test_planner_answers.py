"""What the offline planner answers a demo customer, through the real graph (issue 10, item 9).

Lower-case reservation ids, greetings, bookings and requests in other languages get a real
answer, gate or escalation, never the help menu.
"""

from __future__ import annotations

import pytest

from graph.service import AirlockApp
from tests.helpers import make_services, tool_payloads
from tools.airline.planner import GREETING_MESSAGE, HELP_MESSAGE

pytestmark = pytest.mark.postgres
LEI, MIA = "lei_rossi_3206", "mia_li_3668"


@pytest.fixture(scope="module")
def app(server_url):
    from tests.conftest import drop_database, make_database

    name, url = make_database(server_url)
    services = make_services(url)
    yield AirlockApp(services=services)
    services.close()
    drop_database(server_url, name)


def _send(app: AirlockApp, user: str, text: str):
    thread = app.new_thread(user_id=user)
    return thread, app.send(thread_id=thread, user_id=user, text=text)


@pytest.mark.parametrize("text", ["show me reservation vaaoxj", "reservation vaaoxj please",
                                  "can you show my booking vaaoxj?"])
def test_a_lower_case_id_of_ones_own_reservation_is_read(app, text):
    _, result = _send(app, LEI, text)
    assert "Reservation VAAOXJ" in result.reply and "CLT to MCO" in result.reply


def test_a_word_after_reservation_is_not_taken_for_an_id(app):
    _, result = _send(app, LEI, "what is my reservation status")
    assert result.reply != HELP_MESSAGE
    assert "VAAOXJ" in result.reply and result.reply.endswith("?")  # which one?


@pytest.mark.parametrize("text", ["hi", "Hello", "Hola", "bonjour", "Hallo", "Ciao", "Olá"])
def test_greetings_are_answered(app, text):
    _, result = _send(app, MIA, text)
    assert result.reply == GREETING_MESSAGE


@pytest.mark.parametrize(("text", "kind", "tool"), [
    ("Hola, quiero cancelar mi reserva HKEG34", "question", "cancel_reservation"),
    ("Ich möchte meine Buchung HKEG34 stornieren", "question", "cancel_reservation"),
    ("Je voudrais annuler ma réservation HKEG34", "question", "cancel_reservation"),
    ("Quiero añadir tres maletas a la reserva AIXC49", "confirm", "update_reservation_baggages"),
    ("Vorrei aggiungere due bagagli alla prenotazione AIXC49", "confirm", "update_reservation_baggages"),
    ("Bonjour, je voudrais parler à un humain", "review", "transfer_to_human_agents"),
    ("Quero falar com um atendente humano", "review", "transfer_to_human_agents"),
])
def test_requests_in_other_languages_are_understood(app, text, kind, tool):
    _, result = _send(app, MIA, text)
    assert [p.kind for p in result.pending] == [kind], result.reply
    gate = result.pending[0].value
    named = gate.get("tool") or gate.get("action_requests", [{}])[0].get("name")
    assert named == tool


@pytest.mark.parametrize("text", ["Mostrami la prenotazione NO6JO3", "Muéstrame la reserva NO6JO3"])
def test_a_lookup_in_another_language_shows_the_reservation(app, text):
    _, result = _send(app, MIA, text)
    assert "Reservation NO6JO3" in result.reply


def test_a_policy_question_in_spanish_is_answered(app):
    _, result = _send(app, MIA, "¿Cuántas maletas puedo llevar?")
    assert "Free checked bags" in result.reply


def test_a_booking_is_made_after_the_customer_confirms(app):
    thread, result = _send(app, LEI, "Book a flight from EWR to CLT on 2024-05-22 in economy")
    assert [p.kind for p in result.pending] == ["confirm"], result.reply
    gate = result.pending[0]
    assert gate.value["tool"] == "book_reservation"
    assert "EWR to CLT" in gate.value["message"]
    done = app.answer_confirm(thread_id=thread, user_id=LEI, interrupt_id=gate.id, action="confirm")
    booked = tool_payloads(done.messages)[-1]
    assert booked["status"] not in {"error", "invalid", "denied"}, booked
    assert done.reply.startswith("Done: you are booked on HAT"), done.reply
    assert "EWR to CLT in economy" in done.reply


def test_a_booking_without_a_date_asks_for_it(app):
    _, result = _send(app, LEI, "I want to book a flight from EWR to CLT")
    assert result.pending == [] and "which date" in result.reply and result.reply.endswith("?")
