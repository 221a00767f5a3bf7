"""A PII placeholder only fills an argument of its own PII type (issue 7)."""

from __future__ import annotations

import re

import pytest
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from nodes.guards.vault import InMemoryVault, PlaceholderTypeError
from tests.helpers import RES, USER, make_app, make_services, reservation_doc, tool_call, tool_payloads

pytestmark = pytest.mark.postgres
EMAIL = "lei.rossi.private@example.com"


@pytest.fixture
def services(database_url):
    s = make_services(database_url)
    yield s
    s.close()


def _placeholders(messages: list[BaseMessage], kind: str) -> list[str]:
    text = " ".join(str(m.content) for m in messages)
    return list(dict.fromkeys(re.findall(rf"<{kind}_[0-9]+>", text)))


def _swap(first: str, last: str, dob: str):
    """Script a model that reads the reservation, then rewrites its passenger from placeholders."""

    def step(messages: list[BaseMessage]) -> AIMessage:
        assert isinstance(messages[-1], ToolMessage)
        values = {"PERSON": _placeholders(messages, "PERSON"),
                  "DOB": _placeholders(messages, "DATE_OF_BIRTH"),
                  "EMAIL": _placeholders(messages, "EMAIL_ADDRESS")}
        pick = {k: v[0] for k, v in values.items() if v}
        passenger = {"first_name": pick[first], "last_name": pick[last], "dob": pick[dob]}
        return tool_call("update_reservation_passengers",
                         {"reservation_id": RES, "passengers": [passenger]}, "call_pax",
                         content="Updating the passenger with the details on file.")

    return step


def _run(services, step):
    script = [tool_call("get_reservation_details", {"reservation_id": RES}, "call_read"), step,
              AIMessage(content="Done.")]
    app, model = make_app(services, script)
    thread = app.new_thread(user_id=USER)
    result = app.send(thread_id=thread, user_id=USER,
                      text=f"Hi, my email address is {EMAIL}. Can you check my reservation {RES}?")
    return app, model, result


@pytest.mark.parametrize(
    ("first", "dob", "wrong"),
    [("DOB", "DOB", "DATE_OF_BIRTH"), ("EMAIL", "DOB", "EMAIL_ADDRESS")],
    ids=["date-of-birth-as-first-name", "email-as-first-name"],
)
def test_a_placeholder_of_another_type_is_refused(services, first, dob, wrong):
    """The model puts a date of birth or an e-mail placeholder in a name field: invalid, nothing runs."""
    before = reservation_doc(services, RES)
    app, model, result = _run(services, _swap(first, "PERSON", dob))
    assert result.pending == []
    payload = tool_payloads(result.messages)[-1]
    assert payload["status"] == "invalid"
    assert "first_name" in payload["error"] and wrong in payload["error"] and "PERSON" in payload["error"]
    assert EMAIL not in payload["error"] and before["passengers"][0]["dob"] not in payload["error"]
    assert reservation_doc(services, RES) == before


def test_a_placeholder_of_the_right_type_fills_its_field(services):
    """The control: names from PERSON placeholders and the date of birth from its own placeholder."""
    app, model, result = _run(services, _swap("PERSON", "PERSON", "DOB"))
    assert [p.kind for p in result.pending] == ["confirm"]


def test_an_unknown_placeholder_in_a_pii_field_is_refused():
    """A made-up placeholder is not written as a name."""
    vault = InMemoryVault()
    vault.put("PERSON", "Noah")
    assert vault.resolve("<PERSON_1>", entity_type="PERSON") == "Noah"
    with pytest.raises(PlaceholderTypeError, match="unknown"):
        vault.resolve("<PERSON_7>", entity_type="PERSON")
    with pytest.raises(PlaceholderTypeError, match="DATE_OF_BIRTH"):
        vault.resolve("<DATE_OF_BIRTH_1> Jr", entity_type="PERSON")
    assert vault.resolve("<DATE_OF_BIRTH_1>") == "<DATE_OF_BIRTH_1>"  # untyped: unchanged behaviour
