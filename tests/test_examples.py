"""Every example prompt the README and the app list works for its demo account, as listed.

Each one runs through the real graph (offline planner, every guard layer, real Postgres) as a
demo customer; questions the system asks are answered as the example says, gates are
confirmed, and the outcome must be the one named: an answer, a gate and then the change,
an escalation, or the input guard's refusal. Never the help menu.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from graph.plugins import load_plugin
from graph.service import AirlockApp
from tests.helpers import make_services, tool_payloads
from tools.airline.examples import DEMO_CUSTOMERS, EXAMPLES, Example, app_prompts
from tools.airline.planner import HELP_MESSAGE
from ui.app import example_prompts
from ui.auth import load_accounts

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]
_DONE = {"completed", "captured", "refunded", "issued", "cancelled", "ok"}


@pytest.fixture(scope="module")
def services(server_url):
    from tests.conftest import drop_database, make_database

    name, url = make_database(server_url)
    services = make_services(url)
    yield services
    services.close()
    drop_database(server_url, name)


def _cases() -> list[tuple[str, Example]]:
    return [(customer, e) for e in EXAMPLES
            for customer in ((e.customer,) if e.customer else DEMO_CUSTOMERS)]


@pytest.mark.parametrize(("domain", "heading"), [("airline", "## The demo"), ("retail", "## Run the store")])
def test_the_readme_lists_exactly_the_domain_examples(domain: str, heading: str):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    examples = importlib.import_module(f"tools.{domain}.examples")
    # The table is generated (`python -c "from tools.<domain>.examples import readme_markdown as
    # r; print(r())"`) and sits in the domain's own section of the README.
    section = readme.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    assert examples.readme_markdown() in section, f"README's {domain} table is stale: paste readme_markdown()"
    # Every listed example belongs to a demo account the section and the domain's accounts file offer.
    plugin = load_plugin(domain)
    assert plugin.demo_accounts is not None
    accounts = load_accounts(plugin.demo_accounts)
    assert accounts.is_demo
    for customer in examples.DEMO_CUSTOMERS:
        assert f"`{customer}`" in section
        assert accounts.get(customer) is not None and accounts.get(customer).customer_id == customer  # type: ignore[union-attr]
    assert plugin.demo_prompts(None) == examples.app_prompts(None)


def test_the_app_offers_the_domain_examples():
    for customer in DEMO_CUSTOMERS:
        assert example_prompts(customer) == app_prompts(customer)
        own = [e.prompt for e in EXAMPLES if e.customer == customer]
        assert own and set(own) <= set(example_prompts(customer))
    assert example_prompts(None) == tuple(e.prompt for e in EXAMPLES if not e.customer)


@pytest.mark.parametrize(("customer", "example"), _cases(),
                         ids=[f"{c}:{e.prompt[:40]}" for c, e in _cases()])
def test_example_works_for_its_demo_account(services, customer: str, example: Example):
    app = AirlockApp(services=services)
    thread = app.new_thread(user_id=customer)
    result = app.send(thread_id=thread, user_id=customer, text=example.prompt)
    for answer in example.answers:  # the system's own questions, answered with their buttons
        questions = [p for p in result.pending if p.kind == "question"]
        assert questions, f"expected a question before {answer!r}, got {result.reply!r}"
        result = app.answer_question(thread_id=thread, user_id=customer, interrupt_id=questions[0].id,
                                     value=answer)
    kinds = [p.kind for p in result.pending]
    assert result.reply.strip() != HELP_MESSAGE.strip()
    if example.outcome == "answer":
        assert kinds == [], kinds
        assert example.expect in result.reply, result.reply
        assert not result.reply.startswith(("I'm sorry", "I could not")), result.reply
    elif example.outcome == "refusal":
        assert kinds == []
        assert any(d.get("stage") == "input" and d.get("action") == "block" for d in result.decisions)
        assert result.reply == services.policy.guards.refusal_message
    elif example.outcome == "escalation":
        assert kinds == ["review"], (kinds, result.reply)
        cases = [r for r in app.list_reviews(roles=["reviewer", "supervisor"]) if r["thread_id"] == thread]
        assert len(cases) == 1
    else:
        assert kinds == ["confirm"], (kinds, result.reply)
        gate = result.pending[0]
        assert example.expect in str(gate.value.get("message")), gate.value
        done = app.answer_confirm(thread_id=thread, user_id=customer, interrupt_id=gate.id, action="confirm")
        assert done.pending == [], done.reply
        status = tool_payloads(done.messages)[-1]["status"]
        assert status in _DONE, (status, done.reply)
        assert not done.reply.startswith(("I'm sorry", "I could not")), done.reply
