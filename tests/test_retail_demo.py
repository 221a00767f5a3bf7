"""Every store example works for its demo account with the offline planner, as listed.

Each one runs through the real graph (the retail planner, every guard layer, real Postgres)
as a demo customer: questions are answered as the example says, gates are confirmed, and the
outcome must be the one named: an answer, a gate and then the change, an escalation, or the
input guard's refusal. Never the help menu.
"""

from __future__ import annotations

import json

import pytest

from graph.service import AirlockApp
from tests.helpers import tool_payloads
from tests.retail_support import query, retail_app_services, retail_db
from tools.retail import DEMO_CUSTOMERS, EXAMPLES, Example, app_prompts, make_planner
from tools.retail.planner import HELP_MESSAGE

pytestmark = pytest.mark.postgres
_DONE = {"cancelled", "return_requested", "exchange_requested", "updated"}


@pytest.fixture
def services(server_url):
    with retail_db(server_url) as url, retail_app_services(url) as services:
        yield services


def _cases() -> list[tuple[str, Example]]:
    return [(customer, e) for e in EXAMPLES for customer in ((e.customer,) if e.customer else DEMO_CUSTOMERS)]


def test_the_app_prompts_put_the_customers_own_examples_first():
    for customer in DEMO_CUSTOMERS:
        own = tuple(e.prompt for e in EXAMPLES if e.customer == customer)
        assert own and app_prompts(customer)[:len(own)] == own
    assert app_prompts(None) == tuple(e.prompt for e in EXAMPLES if not e.customer)


@pytest.mark.parametrize(("customer", "example"), _cases(), ids=[f"{c}:{e.prompt[:40]}" for c, e in _cases()])
def test_example_works_for_its_demo_account(services, customer: str, example: Example):
    app = AirlockApp(services=services, model=make_planner())
    thread = app.new_thread(user_id=customer)
    result = app.send(thread_id=thread, user_id=customer, text=example.prompt)
    for answer in example.answers:
        questions = [p for p in result.pending if p.kind == "question"]
        assert questions, f"expected a question before {answer!r}, got {result.reply!r}"
        result = app.answer_question(thread_id=thread, user_id=customer, interrupt_id=questions[0].id, value=answer)
    kinds = [p.kind for p in result.pending]
    assert result.reply.strip() != HELP_MESSAGE.strip()
    if example.outcome == "answer":
        assert kinds == [], kinds
        assert example.expect in result.reply, result.reply
    elif example.outcome == "refusal":
        assert kinds == []
        assert any(d.get("stage") == "input" and d.get("action") == "block" for d in result.decisions)
    elif example.outcome == "escalation":
        assert kinds == ["review"], (kinds, result.reply)
        cases = [r for r in app.list_reviews(roles=["reviewer", "supervisor"]) if r["thread_id"] == thread]
        assert len(cases) == 1 and example.expect in json.dumps(cases[0], default=str)
    else:
        assert kinds == ["confirm"], (kinds, result.reply)
        gate = result.pending[0]
        assert example.expect in str(gate.value.get("message")), gate.value
        done = app.answer_confirm(thread_id=thread, user_id=customer, interrupt_id=gate.id, action="confirm")
        assert done.pending == [], done.reply
        assert tool_payloads(done.messages)[-1]["status"] in _DONE, done.reply
        assert not done.reply.startswith(("I can't", "I'm sorry")), done.reply


def test_the_store_demo_return_path_ends_with_a_refund_in_the_ledger(services):
    """Look up an order, return an item, confirm: the refund is in the ledger, to the card that paid."""
    app = AirlockApp(services=services, model=make_planner())
    customer = "raj_sanchez_2970"
    thread = app.new_thread(user_id=customer)
    shown = app.send(thread_id=thread, user_id=customer, text="Show me order #W7736708")
    assert "Notebook" in shown.reply and "delivered" in shown.reply
    paused = app.send(thread_id=thread, user_id=customer, text="Return the notebook from order #W7736708")
    assert [p.kind for p in paused.pending] == ["confirm"]
    assert "Mastercard ending 2130" in paused.pending[0].value["summary"]
    done = app.answer_confirm(thread_id=thread, user_id=customer, interrupt_id=paused.pending[0].id, action="confirm")
    assert "return for order #W7736708 is requested" in done.reply and "USD 28.14" in done.reply
    rows = query(services.pool, "SELECT kind, amount_usd, payment_method_id FROM retail_ledger")
    assert [(r["kind"], float(r["amount_usd"]), r["payment_method_id"]) for r in rows] == [
        ("refund", 28.14, "credit_card_3362387")]
