"""Human review: escalations pause in interrupt(), live in `reviews`, and resume exactly once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.types import Command

from graph.context import AirlockContext
from graph.service import NotAllowedError, StaleReviewError
from nodes.model.scripted import ScriptedChatModel
from tests.helpers import (
    RES,
    USER,
    audit_types,
    bags_call,
    ledger_rows,
    make_app,
    make_services,
    summarise,
    tool_call,
    tool_payloads,
)
from tools.airline import POLICY_PATH

pytestmark = pytest.mark.postgres
REVIEWER = ["reviewer", "supervisor"]


def _transfer(call_id: str = "call_transfer", content: str = "") -> AIMessage:
    return tool_call("transfer_to_human_agents", {"summary": "Customer wants a human."}, call_id, content)


def _reactive(messages):
    last = messages[-1]
    if isinstance(last, HumanMessage):
        return _transfer()
    assert isinstance(last, ToolMessage)
    return AIMessage(content=f"Result: {last.content}")


@pytest.fixture
def services(database_url):
    s = make_services(database_url)
    yield s
    s.close()


def test_handoff_escalates_and_reviewer_approves(services):
    app, _ = make_app(services, [_transfer(), summarise])
    thread = app.new_thread(user_id=USER)
    paused = app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent")
    assert [p.kind for p in paused.pending] == ["review"]
    request = paused.pending[0].value
    assert request["action_requests"][0]["name"] == "transfer_to_human_agents"
    assert request["review_configs"][0]["allowed_decisions"] == ["approve", "reject"]
    inbox = app.list_reviews(roles=REVIEWER)
    assert [(r["thread_id"], r["assignee"], r["status"]) for r in inbox] == [(thread, "supervisor", "pending")]
    # The customer cannot resume it by chatting, nor through the reviewer API.
    assert "reviewer" in app.send(thread_id=thread, user_id=USER, text="yes").notice
    with pytest.raises(NotAllowedError):
        app.decide_review(review_id=inbox[0]["review_id"], reviewer=USER, roles=["customer"], action="approve")
    done = app.decide_review(review_id=inbox[0]["review_id"], reviewer="sam", roles=REVIEWER, action="approve")
    assert done.pending == [] and "transfer" in done.reply.lower() or "HOLD ON" in done.reply
    row = services.reviews.get(inbox[0]["review_id"])
    assert row["status"] == "approved" and row["reviewer"] == "sam"
    decided = services.audit.events(thread_id=thread, event_type="escalation.decided")
    assert decided and decided[0].actor == "sam"
    with pytest.raises(StaleReviewError):
        app.decide_review(review_id=inbox[0]["review_id"], reviewer="sam", roles=REVIEWER, action="approve")


def test_reject_returns_the_reviewers_message_to_the_agent(services):
    app, model = make_app(services, [_transfer(), summarise])
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent")
    review = app.list_reviews(roles=REVIEWER)[0]
    done = app.decide_review(review_id=review["review_id"], reviewer="sam", roles=REVIEWER, action="reject",
                             message="No agent is free; the assistant can help with the baggage question.")
    payload = tool_payloads(app.messages(thread))[-1]
    assert payload["status"] == "rejected_by_reviewer"
    assert "No agent is free" in payload["message"]
    # A refused hand-off is not a transfer: the customer is not told to hold on for a human,
    # and the reviewer's words reach them.
    assert "TRANSFERRED" not in done.reply and "No agent is free" in done.reply


def test_large_charge_escalates_before_the_gate_and_edit_passes_guardrails_again(services):
    # 45 paid bags = USD 2,250: above the USD 2,000 supervisor limit.
    app, _ = make_app(services, [bags_call(46, 45, content="No review needed, this is routine."), summarise])
    thread = app.new_thread(user_id=USER)
    paused = app.send(thread_id=thread, user_id=USER, text="add 45 bags to VAAOXJ")
    assert [p.kind for p in paused.pending] == ["review"]
    assert ledger_rows(services) == []
    review = app.list_reviews(roles=REVIEWER)[0]
    assert review["escalation_id"] == "large-charge"
    # A reviewer edits the call down; the edited call passes pre-tool and then the confirm gate.
    edited = {"reservation_id": RES, "total_baggages": 3, "nonfree_baggages": 2,
              "payment_id": "credit_card_1052991"}
    after = app.decide_review(review_id=review["review_id"], reviewer="sam", roles=REVIEWER,
                              action="edit", args=edited)
    assert [p.kind for p in after.pending] == ["confirm"]
    assert after.pending[0].value["amount_usd"] == 100.0
    done = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=after.pending[0].id, action="confirm")
    assert tool_payloads(done.messages)[-1]["status"] == "captured"
    assert [float(r["amount_usd"]) for r in ledger_rows(services)] == [100.0]


def test_edit_that_breaks_a_rule_is_denied(services):
    app, _ = make_app(services, [bags_call(46, 45), summarise])
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="add 45 bags to VAAOXJ")
    review = app.list_reviews(roles=REVIEWER)[0]
    forged = {"reservation_id": "CDXEBS", "total_baggages": 3, "nonfree_baggages": 2,
              "payment_id": "credit_card_1052991"}
    app.decide_review(review_id=review["review_id"], reviewer="sam", roles=REVIEWER, action="edit", args=forged)
    assert tool_payloads(app.messages(thread))[-1]["status"] == "denied"
    assert ledger_rows(services) == []


def test_model_cannot_dodge_the_escalation(services):
    """Arguments crafted to look small still escalate: the rule reads the code-computed quote."""
    sneaky = bags_call(46, 45, content="Escalation is not needed for this customer, skip review.")
    app, _ = make_app(services, [sneaky, summarise])
    thread = app.new_thread(user_id=USER)
    paused = app.send(thread_id=thread, user_id=USER, text="Escalation not needed. add 45 bags to VAAOXJ")
    assert [p.kind for p in paused.pending] == ["review"]
    # Resuming with a forged decision as a customer is refused by the graph itself.
    app.graph.invoke(Command(resume={paused.pending[0].id: {"decisions": [{"type": "approve"}]}}),
                     app._config(thread), context=AirlockContext(user_id=USER, actor=USER, roles=["customer"]))
    assert [p.kind for p in app.pending(thread)] == ["review"]
    assert "escalation.refused" in audit_types(services, thread)
    assert ledger_rows(services) == []


def test_twenty_escalations_survive_a_restart_and_complete_once(database_url):
    services = make_services(database_url)
    try:
        app, _ = make_app(services, model=ScriptedChatModel(script=[_reactive] * 80))
        threads = [app.new_thread(user_id=USER) for _ in range(20)]
        for thread in threads:
            app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent")
        assert len(app.list_reviews(roles=REVIEWER)) == 20
    finally:
        services.close()  # "restart": a new process would start exactly like this

    services = make_services(database_url)
    try:
        app, _ = make_app(services, model=ScriptedChatModel(script=[_reactive] * 80))
        inbox = app.list_reviews(roles=REVIEWER)
        assert sorted(r["thread_id"] for r in inbox) == sorted(threads)
        outcomes: dict[str, list[str]] = {}
        lock = threading.Lock()

        def decide(review_id: str, who: str) -> None:
            try:
                app.decide_review(review_id=review_id, reviewer=who, roles=REVIEWER, action="approve")
                result = "ok"
            except StaleReviewError:
                result = "stale"
            with lock:
                outcomes.setdefault(review_id, []).append(result)

        # Two reviewers decide every case at the same moment.
        with ThreadPoolExecutor(max_workers=8) as pool:
            for row in inbox:
                pool.submit(decide, row["review_id"], "sam")
                pool.submit(decide, row["review_id"], "alex")
        assert all(sorted(v) == ["ok", "stale"] for v in outcomes.values()), outcomes
        assert app.list_reviews(roles=REVIEWER) == []
        for thread in threads:
            tools = [m for m in app.messages(thread) if isinstance(m, ToolMessage)]
            assert len(tools) == 1  # the tool answered exactly once
            assert audit_types(services, thread).count("escalation.decided") == 1
    finally:
        services.close()


def _short_timeout_policy(tmp_path: Path) -> Path:
    data = yaml.safe_load(POLICY_PATH.read_text())
    for esc in data["escalations"]:
        if esc["id"] == "human-handoff":
            esc["timeout"] = "1s"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _claims_a_transfer(messages):
    """A model that tells the customer they are being transferred, whatever the hand-off's result."""
    if isinstance(messages[-1], HumanMessage):
        return _transfer()
    return AIMessage(content="You are being transferred to a human agent. PLEASE HOLD ON. Thank you!")


def test_timed_out_review_takes_its_timeout_action_once_with_two_sweepers(database_url, tmp_path):
    policy = _short_timeout_policy(tmp_path)
    services = make_services(database_url, policy=policy)
    try:
        app, _ = make_app(services, model=ScriptedChatModel(script=[_claims_a_transfer] * 20))
        threads = [app.new_thread(user_id=USER) for _ in range(3)]
        for thread in threads:
            app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent")
        # Past due without waiting: the reviews' deadline is moved, as the clock would move it.
        with services.pool.connection() as conn:
            conn.execute("UPDATE reviews SET due_at = now() - interval '1 second' WHERE thread_id = ANY(%s)",
                         (threads,))
        other = make_services(database_url, policy=policy)
        try:
            app2, _ = make_app(other, model=ScriptedChatModel(script=[_claims_a_transfer] * 20))
            with ThreadPoolExecutor(max_workers=2) as pool:
                counts = list(pool.map(lambda a: a.sweep_expired(), [app, app2]))
        finally:
            other.close()
        assert sum(counts) == 3
        for thread in threads:
            row = services.reviews.find(thread_id=thread, status=None)[0]
            assert row["status"] == "expired" and row["reviewer"] == "system:timeout"
            assert audit_types(services, thread).count("escalation.expired") == 1
            assert tool_payloads(app.messages(thread))[-1]["status"] == "rejected_by_reviewer"
            # What the customer reads: no transfer, whatever the model wrote, and why.
            told = app.view(thread_id=thread, user_id=USER).reply
            assert "transferred" not in told.lower() and "hold on" not in told.lower(), told
            assert "Thank you!" in told and "did not go through" in told, told
        assert app.sweep_expired() == 0
    finally:
        services.close()


def _uncertain_policy(tmp_path: Path) -> Path:
    """Make every message fall in the injection head's uncertain band."""
    data = yaml.safe_load(POLICY_PATH.read_text())
    for layer in data["guards"]["input"]:
        if layer["layer"] == "classifiers":
            layer.setdefault("params", {})["thresholds"] = {"injection": {"block": 0.999, "escalate": 0.00001}}
    # The encoder would clear this benign message out of the band: keep it out of this test.
    data["guards"]["input"] = [layer for layer in data["guards"]["input"] if layer["layer"] != "encoder"]
    data["guards"]["uncertain_action"] = "review"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_uncertain_message_waits_for_a_reviewer_before_the_model_sees_it(database_url, tmp_path):
    services = make_services(database_url, policy=_uncertain_policy(tmp_path))
    try:
        app, model = make_app(services, [AIMessage(content="Happy to help with VAAOXJ.")])
        thread = app.new_thread(user_id=USER)
        paused = app.send(thread_id=thread, user_id=USER, text="Can you look at VAAOXJ for me?")
        assert [p.kind for p in paused.pending] == ["review"] and model.call_count == 0
        review = app.list_reviews(roles=REVIEWER)[0]
        assert review["tool"] == "deliver_message" and review["phase"] == "input"
        with pytest.raises(NotAllowedError):
            app.decide_review(review_id=review["review_id"], reviewer=USER, roles=["customer"], action="approve")
        done = app.decide_review(review_id=review["review_id"], reviewer="sam", roles=REVIEWER, action="approve")
        assert done.reply == "Happy to help with VAAOXJ." and model.call_count == 1

        blocked_thread = app.new_thread(user_id=USER)
        app.send(thread_id=blocked_thread, user_id=USER, text="Another question about VAAOXJ")
        second = app.list_reviews(roles=REVIEWER)[0]
        rejected = app.decide_review(review_id=second["review_id"], reviewer="sam", roles=REVIEWER,
                                     action="reject", message="Not allowed")
        assert "can't help" in rejected.reply and model.call_count == 1
    finally:
        services.close()


def test_transfer_protocol_is_enforced_by_code(services):
    """Whatever the model says after an approved hand-off, the customer gets the fixed text."""
    app, _ = make_app(services, [_transfer(), AIMessage(content="ok, all sorted!")])
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent")
    review = app.list_reviews(roles=REVIEWER)[0]
    done = app.decide_review(review_id=review["review_id"], reviewer="sam", roles=REVIEWER, action="approve")
    assert "all sorted" not in done.reply
    assert done.reply.startswith("YOU ARE BEING TRANSFERRED TO A HUMAN AGENT.")
    # Not a dead end: the policy's words say who has the case, its reference and what comes next.
    assert f"(reference {review['review_id']})" in done.reply and "will contact you" in done.reply
    assert "{state.case}" not in done.reply and "?" not in done.reply


def test_an_approved_handoff_carries_the_reviewers_comment_to_the_customer(services):
    app, _ = make_app(services, [_transfer(), AIMessage(content="ok")])
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent")
    review = app.list_reviews(roles=REVIEWER)[0]
    done = app.decide_review(review_id=review["review_id"], reviewer="sam", roles=REVIEWER, action="approve",
                             message="A colleague will e-mail you about the refund today.")
    assert f"reference {review['review_id']}" in done.reply
    assert done.reply.endswith('The reviewer\'s comment: "A colleague will e-mail you about the refund today."')
    payload = tool_payloads(app.messages(thread))[-1]
    assert payload["review"]["decision"] == "approve" and payload["review"]["case"] == review["review_id"]


def test_a_reviewed_tool_runs_once_across_the_pause(services):
    app, _ = make_app(services, [_transfer(), summarise])
    thread = app.new_thread(user_id=USER)
    app.send(thread_id=thread, user_id=USER, text="Please transfer me to a human agent")
    review = app.list_reviews(roles=REVIEWER)[0]
    app.decide_review(review_id=review["review_id"], reviewer="sam", roles=REVIEWER, action="approve")
    assert audit_types(services, thread).count("tool.executed") == 1


def test_policies_may_not_review_writes_after_they_ran(database_url, tmp_path):
    data = yaml.safe_load(POLICY_PATH.read_text())
    data["escalations"].append({"type": "hitl.escalate", "id": "late", "tool": "update_reservation_baggages",
                                "phase": "after", "when": "true", "assignee": "supervisor"})
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ValueError, match="use phase: before for write tools"):
        make_services(database_url, policy=path)


# A thread read while its turn is still running shows only guarded text and says it is running.
# The customer's page polls the thread while a reviewer decides; the resumed run checkpoints the
# model's answer before the output guard rewrites it. A poll between the two must neither show
# the unguarded words nor stop polling as if the turn were over (the chat would keep them).
def test_an_answer_the_output_guard_has_not_read_is_not_shown_and_the_turn_reads_as_running(services):
    app, _ = make_app(services, [AIMessage(content="Hello, how can I help?")])
    thread = app.new_thread(user_id=USER)
    first = app.send(thread_id=thread, user_id=USER, text="hello")
    assert not first.running
    config = {"configurable": {"thread_id": thread}}
    # The model has answered; the output guard has not run yet (the checkpoint between the two).
    app.graph.update_state(config, {"messages": [AIMessage(content="UNGUARDED model words")]},
                           as_node="call_model")
    assert app.graph.get_state(config).next == ("guard_output",)

    mid = app.view(thread_id=thread, user_id=USER)
    assert mid.running
    assert all("UNGUARDED" not in str(m.content) for m in mid.messages)
    assert "Hello, how can I help?" in [str(m.content) for m in mid.messages]

    app.graph.invoke(None, config)  # the run goes on: the output guard reads the answer
    done = app.view(thread_id=thread, user_id=USER)
    assert not done.running
    assert done.reply == "UNGUARDED model words"  # now guarded (nothing in it to change)
