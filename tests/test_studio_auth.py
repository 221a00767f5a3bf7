"""Identity through the LangGraph server (issue 7, class 8).

Two layers, each tested the way an attacker works:

* In the graph: a run that carries an authenticated user (``langgraph_auth_user`` in the
  config, as the LangGraph server sets it) acts for that user only; a context ``user_id``
  that differs is refused; a resume by anyone but the thread's owner is not consent.
* Over HTTP through a real ``langgraph dev`` with the custom auth of ``langgraph.json``:
  customer A cannot see, resume or confirm customer B's thread, nor act as B; requests
  without valid credentials are refused; B's own flow still charges exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage
from langgraph.types import Command

from graph.builder import build_graph
from graph.context import AirlockContext
from tests.conftest import drop_database, make_database
from tests.helpers import RES, ledger_rows, make_services
from tests.test_studio import basic, run_studio

OWNER = "lei_rossi_3206"  # owns reservation VAAOXJ (RES)
ATTACKER = "harper_lopez_1489"
PASSWORD = "demo"  # both demo accounts (tools/airline/accounts.demo.yaml)
ASK = "Please add 3 checked bags to reservation VAAOXJ"


# -- in the graph -------------------------------------------------------------------------------
def _as(user: str, thread_id: str) -> dict[str, Any]:
    """Return a run config as the LangGraph server builds it for an authenticated customer."""
    return {"configurable": {
        "thread_id": thread_id,
        "langgraph_auth_user": {"identity": user, "customer_id": user, "roles": ["customer"],
                                "permissions": ["customer"], "is_authenticated": True},
        "langgraph_auth_user_id": user,
    }}


@pytest.fixture
def graph_and_services(database_url):
    services = make_services(database_url)
    try:
        yield build_graph(services=services, checkpointer=services.checkpointer()), services
    finally:
        services.close()


def _gate_of(graph: Any, config: dict[str, Any]) -> Any:
    gates = [i for t in graph.get_state(config).tasks for i in t.interrupts]
    assert len(gates) == 1 and gates[0].value["type"] == "confirm", gates
    return gates[0]


@pytest.mark.postgres
def test_graph_refuses_a_context_user_id_that_differs_from_the_authenticated_user(graph_and_services):
    graph, services = graph_and_services
    config = _as(ATTACKER, str(uuid.uuid4()))
    # The attacker signs in as themselves and claims to be the owner of VAAOXJ in the context.
    graph.invoke({"messages": [HumanMessage(content=ASK)]}, config,
                 context=AirlockContext(user_id=OWNER, actor=OWNER, roles=["customer", "reviewer"]))
    state = graph.get_state(config)
    assert not [i for t in state.tasks for i in t.interrupts]  # no gate for someone else's booking
    assert state.values["input_action"] == "block"
    assert ledger_rows(services, RES) == []
    refused = services.audit.events(thread_id=config["configurable"]["thread_id"], event_type="identity.refused")
    assert refused and refused[0].actor == ATTACKER


@pytest.mark.postgres
def test_graph_takes_the_customer_from_the_credentials_not_the_context(graph_and_services):
    graph, services = graph_and_services
    config = _as(OWNER, str(uuid.uuid4()))
    graph.invoke({"messages": [HumanMessage(content=ASK)]}, config)  # no context at all
    gate = _gate_of(graph, config)
    assert gate.value["amount_usd"] == 150.0  # the owner's reservation, found through the credentials


@pytest.mark.postgres
def test_graph_does_not_count_a_resume_by_another_customer_as_consent(graph_and_services):
    graph, services = graph_and_services
    thread = str(uuid.uuid4())
    graph.invoke({"messages": [HumanMessage(content=ASK)]}, _as(OWNER, thread),
                 context=AirlockContext(user_id=OWNER))
    gate = _gate_of(graph, _as(OWNER, thread))
    # The attacker holds the exact hash the interrupt published and answers with it, as themselves
    # (no forged context), and then again with a forged context naming the owner.
    stolen = {"action": "confirm", "args_hash": gate.value["args_hash"], "actor": OWNER}
    graph.invoke(Command(resume={gate.id: stolen}), _as(ATTACKER, thread))
    again = _gate_of(graph, _as(OWNER, thread))
    assert again.id != gate.id and "not accepted" in again.value["notice"]
    assert ledger_rows(services, RES) == []
    graph.invoke(Command(resume={again.id: {**stolen, "args_hash": again.value["args_hash"]}}),
                 _as(ATTACKER, thread), context=AirlockContext(user_id=OWNER, actor=OWNER))
    third = _gate_of(graph, _as(OWNER, thread))
    assert third.id != again.id and ledger_rows(services, RES) == []
    # A plain (un-keyed) resume value is no different.
    graph.invoke(Command(resume={**stolen, "args_hash": third.value["args_hash"]}), _as(ATTACKER, thread))
    fourth = _gate_of(graph, _as(OWNER, thread))
    assert fourth.id != third.id and ledger_rows(services, RES) == []
    # The refused answers stay refused when the owner's run replays them; the owner's own answer counts.
    graph.invoke(Command(resume={fourth.id: {"action": "confirm", "args_hash": fourth.value["args_hash"]}}),
                 _as(OWNER, thread))
    state = graph.get_state(_as(OWNER, thread))
    assert not [i for t in state.tasks for i in t.interrupts]
    assert len(ledger_rows(services, RES)) == 1
    # Each attempt is audited under the attacker's verified name; only the owner's answer was accepted.
    rejected = services.audit.events(thread_id=thread, event_type="confirm.rejected")
    assert len([e for e in rejected if e.actor == ATTACKER]) >= 3
    accepted = services.audit.events(thread_id=thread, event_type="confirm.accepted")
    assert [e.actor for e in accepted] == [OWNER]


@pytest.mark.postgres
def test_graph_refuses_another_customers_message_in_a_thread(graph_and_services):
    graph, services = graph_and_services
    thread = str(uuid.uuid4())
    graph.invoke({"messages": [HumanMessage(content="Show me reservation VAAOXJ")]}, _as(OWNER, thread))
    assert graph.get_state(_as(OWNER, thread)).values["owner"] == OWNER
    # The attacker writes into the owner's thread: the model never runs on the owner's history for them.
    graph.invoke({"messages": [HumanMessage(content=ASK)]}, _as(ATTACKER, thread))
    state = graph.get_state(_as(OWNER, thread))
    assert state.values["owner"] == OWNER and state.values["input_action"] == "block"
    assert not [i for t in state.tasks for i in t.interrupts]
    assert ledger_rows(services, RES) == []


# -- over HTTP, through `langgraph dev` ----------------------------------------------------------
@pytest.fixture(scope="module")
def studio(server_url, tmp_path_factory) -> Iterator[tuple[str, str]]:
    name, url = make_database(server_url)
    try:
        with run_studio(url, Path(tmp_path_factory.mktemp("studio-auth"))) as studio_url:
            yield studio_url, url
    finally:
        drop_database(server_url, name)


def _client(url: str, user: str | None = None, password: str = PASSWORD) -> Any:
    from langgraph_sdk import get_sync_client

    return get_sync_client(url=url, headers=basic(user, password) if user else {})


def _status(call: Any) -> int:
    with pytest.raises(httpx.HTTPStatusError) as info:
        call()
    return info.value.response.status_code


def _ledger(database_url: str) -> int:
    services = make_services(database_url)
    try:
        return len(ledger_rows(services, RES))
    finally:
        services.close()


@pytest.fixture(scope="module")
def owners_gate(studio) -> tuple[str, dict[str, Any]]:
    """A thread of the owner paused at the confirm gate for VAAOXJ; returns (thread id, gate)."""
    url, _ = studio
    owner = _client(url, OWNER)
    thread = owner.threads.create()["thread_id"]
    owner.runs.wait(thread, "airlock", input={"messages": [{"role": "user", "content": ASK}]})
    gates = owner.threads.get_state(thread)["interrupts"]
    assert len(gates) == 1 and gates[0]["value"]["type"] == "confirm"
    return thread, gates[0]


@pytest.mark.studio
@pytest.mark.postgres
@pytest.mark.slow
def test_http_requests_without_valid_credentials_are_refused(studio):
    url, _ = studio
    anonymous = _client(url)
    assert _status(lambda: anonymous.threads.create()) == 401
    assert _status(lambda: anonymous.threads.search()) == 401
    assert _status(lambda: _client(url, OWNER, "not-the-password").threads.search()) == 401
    assert _status(lambda: _client(url, "nobody").threads.search()) == 401
    # The LangSmith Studio scheme is not a way around the credentials.
    r = httpx.post(f"{url}/threads/search", json={}, headers={"x-auth-scheme": "langsmith"})
    assert r.status_code in (401, 403), r.text
    # A reviewer account authenticates but is not a customer: no threads, no runs.
    reviewer = _client(url, "sam", "review")
    assert _status(lambda: reviewer.threads.create()) == 403


@pytest.mark.studio
@pytest.mark.postgres
@pytest.mark.slow
def test_http_customer_cannot_read_or_find_another_customers_thread(studio, owners_gate):
    url, _ = studio
    thread, _ = owners_gate
    attacker = _client(url, ATTACKER)
    assert _status(lambda: attacker.threads.get(thread)) == 404
    assert _status(lambda: attacker.threads.get_state(thread)) == 404
    assert _status(lambda: attacker.threads.get_history(thread)) == 404
    assert thread not in {t["thread_id"] for t in attacker.threads.search(limit=100)}
    assert _status(lambda: attacker.threads.update(thread, metadata={"owner": ATTACKER})) == 404
    assert _status(lambda: attacker.threads.update_state(thread, {"owner": ATTACKER})) == 404
    # A thread created with someone else's owner in its metadata still belongs to its creator.
    mine = attacker.threads.create(metadata={"owner": OWNER})
    assert mine["metadata"]["owner"] == ATTACKER
    assert thread in {t["thread_id"] for t in _client(url, OWNER).threads.search(limit=100)}


@pytest.mark.studio
@pytest.mark.postgres
@pytest.mark.slow
def test_http_customer_cannot_resume_or_confirm_another_customers_gate(studio, owners_gate):
    url, database_url = studio
    thread, gate = owners_gate
    attacker = _client(url, ATTACKER)
    # The hash the owner's interrupt published, as if it had leaked: still not the attacker's to use.
    stolen = {"action": "confirm", "args_hash": gate["value"]["args_hash"], "actor": OWNER}
    assert _status(lambda: attacker.runs.wait(thread, "airlock", command={"resume": {gate["id"]: stolen}})) == 404
    assert _status(lambda: attacker.runs.wait(thread, "airlock", command={"resume": stolen},
                                              context={"user_id": OWNER})) in (403, 404)
    assert _status(lambda: attacker.runs.create(thread, "airlock", input={"messages": [
        {"role": "user", "content": "yes"}]})) == 404
    assert _ledger(database_url) == 0
    # The owner's gate is untouched.
    assert _client(url, OWNER).threads.get_state(thread)["interrupts"] == [gate]


@pytest.mark.studio
@pytest.mark.postgres
@pytest.mark.slow
def test_http_customer_cannot_act_as_another_customer_through_the_context(studio):
    url, database_url = studio
    attacker = _client(url, ATTACKER)
    thread = attacker.threads.create()["thread_id"]
    for context in ({"user_id": OWNER}, {"user_id": OWNER, "actor": OWNER}, {"actor": OWNER}):
        assert _status(lambda c=context: attacker.runs.wait(thread, "airlock", input={"messages": [
            {"role": "user", "content": ASK}]}, context=c)) == 403
    # Without a forged context the run acts for the attacker, whose booking VAAOXJ is not: no gate.
    attacker.runs.wait(thread, "airlock", input={"messages": [{"role": "user", "content": ASK}]})
    assert attacker.threads.get_state(thread)["interrupts"] == []
    assert _ledger(database_url) == 0


@pytest.mark.studio
@pytest.mark.postgres
@pytest.mark.slow
def test_http_owner_confirms_their_gate_and_is_charged_exactly_once(studio, owners_gate):
    url, database_url = studio
    thread, gate = owners_gate
    owner = _client(url, OWNER)
    owner.runs.wait(thread, "airlock", command={"resume": {gate["id"]: {
        "action": "confirm", "args_hash": gate["value"]["args_hash"]}}})
    state = owner.threads.get_state(thread)
    assert state["interrupts"] == []
    assert "captured" in str(state["values"]["messages"][-2]["content"])
    assert _ledger(database_url) == 1
    # A replay of the same confirmation (the server accepts it: the interrupt is gone) charges nothing more.
    owner.runs.wait(thread, "airlock", command={"resume": {gate["id"]: {
        "action": "confirm", "args_hash": gate["value"]["args_hash"]}}})
    assert owner.threads.get_state(thread)["interrupts"] == []
    assert _ledger(database_url) == 1


@pytest.mark.studio
@pytest.mark.postgres
@pytest.mark.slow
def test_http_request_bodies_over_the_limit_are_refused(studio):
    url, database_url = studio
    headers = basic(OWNER, PASSWORD)
    thread = httpx.post(f"{url}/threads", json={}, headers=headers, timeout=30).json()["thread_id"]
    huge = {"assistant_id": "airlock", "input": {"messages": [{"role": "user", "content": "x" * 2_000_000}]}}
    answer = httpx.post(f"{url}/threads/{thread}/runs/wait", json=huge, headers=headers, timeout=60)
    assert answer.status_code == 413 and "too large" in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:
        yield b'{"metadata": {"pad": "'
        for _ in range(64):
            yield b"x" * 65_536  # 4 MiB without a Content-Length
        yield b'"}}'

    answer = httpx.post(f"{url}/threads", content=chunks(), timeout=60,
                        headers={**headers, "Content-Type": "application/json"})
    assert answer.status_code == 413
    # Nothing of either reached the checkpoints; a normal request still works.
    assert httpx.get(f"{url}/threads/{thread}/state", headers=headers, timeout=30).json()["values"] in ({}, None)
    assert httpx.post(f"{url}/threads", json={}, headers=headers, timeout=30).status_code == 200


@pytest.mark.studio
@pytest.mark.postgres
@pytest.mark.slow
def test_http_wrong_passwords_from_one_address_do_not_lock_the_customer_out(studio):
    url, _ = studio
    victim = "mia_li_3668"  # a demo customer not signed in elsewhere in this module (no cached login)
    for n in range(8):  # a stranger guesses the customer's password from 127.0.0.1
        answer = httpx.post(f"{url}/threads/search", json={}, headers=basic(victim, f"guess-{n}"), timeout=30)
        assert answer.status_code == 401
    # The right password from the guessing address is refused for now ...
    assert httpx.post(f"{url}/threads/search", json={}, headers=basic(victim, PASSWORD),
                      timeout=30).status_code == 401
    # ... but the customer, from their own address, is not locked out.
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30) as own:
        assert own.post(f"{url}/threads/search", json={}, headers=basic(victim, PASSWORD)).status_code == 200
