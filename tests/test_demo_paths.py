"""What customers and reviewers see on the demo paths (issue 10, items 2, 3, 4, 5 and 8).

Through the real graph: the offline planner, every guard layer of the airline policy, Postgres.
"""

from __future__ import annotations

import json
import re

import pytest
from langchain_core.messages import AIMessage

from graph.service import AirlockApp, InvalidEditError, NotAllowedError
from nodes.input_guard import too_long_message
from tests.helpers import RES, USER, make_app, make_services, reservation_doc

pytestmark = pytest.mark.postgres
REVIEWER = ["reviewer", "supervisor"]


@pytest.fixture
def app(database_url):
    services = make_services(database_url)
    yield AirlockApp(services=services)
    services.close()


def _large_bag_case(app: AirlockApp) -> tuple[str, dict]:
    """Ask for 40 extra bags (USD 2,000): a supervisor's case before any gate."""
    thread = app.new_thread(user_id=USER)
    result = app.send(thread_id=thread, user_id=USER, text=f"Add 40 checked bags to reservation {RES}")
    assert [p.kind for p in result.pending] == ["review"], result.reply
    (case,) = [r for r in app.list_reviews(roles=REVIEWER) if r["thread_id"] == thread]
    return thread, case


def test_an_edited_request_tells_the_customer_the_figures_it_ran_with(app):
    thread, case = _large_bag_case(app)
    # The reviewer sends only what changes; the rest of the call stays as it was.
    paused = app.decide_review(review_id=case["review_id"], reviewer="sam", roles=REVIEWER, action="edit",
                               args={"total_baggages": 3, "nonfree_baggages": 2},
                               message="Two paid bags is the most we can add today.")
    gates = [p for p in paused.pending if p.kind == "confirm"]
    assert gates and "USD 100" in gates[0].value["message"]  # the customer confirms the edited call
    done = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gates[0].id, action="confirm")
    reply = done.reply
    assert "3 checked bag(s), 2 of them paid" in reply, reply
    answer, _, note = reply.partition("A reviewer changed your request")
    # Word boundaries: a random charge id such as CHG-...41... is not the old figure.
    assert "USD 100" in answer and not re.search(r"\b(41|2,000)\b", answer), answer
    assert note
    assert "total baggages: 41 -> 3" in reply
    assert "Two paid bags is the most we can add today." in reply
    assert reservation_doc(app.services, RES)["total_baggages"] == 3


def test_an_invalid_edit_is_refused_before_the_case_is_taken(app):
    thread, case = _large_bag_case(app)
    for bad in ({"total_baggages": "many"}, {"nonfree_baggages": -1}, {"surprise": 1}):
        with pytest.raises(InvalidEditError, match="still pending"):
            app.decide_review(review_id=case["review_id"], reviewer="sam", roles=REVIEWER,
                              action="edit", args=bad)
    assert app.services.reviews.get(case["review_id"])["status"] == "pending"
    assert [p.kind for p in app.pending(thread)] == ["review"]


# The second phrase sits in the classifiers' uncertain band today (2026-12-05): the policy's
# `proceed` lets it through unreviewed (a hand-off is not a write), so it too takes one review.
@pytest.mark.parametrize("text", ["I want to talk to a human", "let me speak to a real person"])
def test_asking_for_a_human_needs_one_review_and_is_not_held_as_harmful(app, text):
    thread = app.new_thread(user_id=USER)
    result = app.send(thread_id=thread, user_id=USER, text=text)
    # The message reached the planner: not blocked, not held for a review of its own.
    assert not any(d.get("stage") == "input" and d.get("action") == "block" for d in result.decisions)
    assert [p.kind for p in result.pending] == ["review"]
    cases = [r for r in app.list_reviews(roles=REVIEWER) if r["thread_id"] == thread]
    assert [c["tool"] for c in cases] == ["transfer_to_human_agents"]
    assert "edit" not in cases[0]["payload"]["review_configs"][0]["allowed_decisions"]
    with pytest.raises(NotAllowedError, match="allows only"):
        app.decide_review(review_id=cases[0]["review_id"], reviewer="sam", roles=REVIEWER, action="edit",
                          args={"summary": "x"})
    done = app.decide_review(review_id=cases[0]["review_id"], reviewer="sam", roles=REVIEWER, action="approve")
    assert done.pending == [] and done.reply.startswith("YOU ARE BEING TRANSFERRED TO A HUMAN AGENT.")
    assert f"reference {cases[0]['review_id']}" in done.reply  # and what happens next
    assert [r for r in app.list_reviews(roles=REVIEWER) if r["thread_id"] == thread] == []


def test_a_message_over_the_limit_is_not_cut_and_is_kept_for_the_record(app):
    limit = app.input_limit
    assert limit == 4000
    text = "Please add one bag to reservation VAAOXJ. " + "I also want to explain the whole story. " * 110
    text += "THE END OF MY MESSAGE"
    assert len(text) > limit
    thread = app.new_thread(user_id=USER)
    result = app.send(thread_id=thread, user_id=USER, text=text)
    assert result.invalid and result.notice == too_long_message(len(text), limit)
    assert f"{len(text):,} characters" in result.notice and "4,000" in result.notice
    assert app.messages(thread) == []  # nothing half-read went on
    (event,) = [e for e in app.services.audit.events(thread_id=thread) if e.event_type == "input.too_long"]
    assert event.payload["chars"] == len(text) and event.payload["limit"] == limit
    assert "THE END" not in json.dumps(event.payload)  # audit payloads hold no message text
    (kept,) = app.services.transcript.refused(thread)  # the whole text, for the record
    assert kept.text == text and kept.text.endswith("THE END OF MY MESSAGE")
    with app.services.pool.connection() as conn:
        row = conn.execute("SELECT id, chars, reason, blob FROM refused_messages WHERE thread_id = %s",
                           (thread,)).fetchone()
    assert row["id"] == event.payload["record"] and row["chars"] == len(text) and row["reason"] == "too_long"
    assert b"THE END" not in bytes(row["blob"])  # encrypted at rest
    assert app.services.audit.verify().ok


def test_the_graph_itself_names_the_limit_when_a_long_message_reaches_it(app):
    # Studio and API callers reach the graph without the service's check.
    from langchain_core.messages import HumanMessage

    from graph.context import AirlockContext

    thread = app.new_thread(user_id=USER)
    text = "x" * 4100
    app.graph.invoke({"messages": [HumanMessage(content=text)]},
                     {"configurable": {"thread_id": thread}},
                     context=AirlockContext(user_id=USER, actor=USER, roles=["customer"]))
    last = app.messages(thread)[-1]
    assert last.text == too_long_message(4100, 4000)
    assert json.dumps(last.text).count("4,100") == 1


def test_an_answer_made_of_content_blocks_is_shown_as_its_text(database_url):
    services = make_services(database_url)
    try:
        blocks = [{"type": "text", "text": "Your reservation VAAOXJ"}, {"type": "text", "text": " is confirmed."}]
        app, _ = make_app(services, [AIMessage(content=blocks)])  # type: ignore[list-item]
        thread = app.new_thread(user_id=USER)
        result = app.send(thread_id=thread, user_id=USER, text="Is my reservation confirmed?")
        assert result.reply == "Your reservation VAAOXJ is confirmed."
        assert app.messages(thread)[-1].content == "Your reservation VAAOXJ is confirmed."
    finally:
        services.close()
