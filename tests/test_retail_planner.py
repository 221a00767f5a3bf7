"""The store's offline planner on its own: one call or one answer per turn, read from the messages only."""

from __future__ import annotations

import json

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from tools.retail.planner import TRANSFER_MESSAGE, RetailPlanner

SYSTEM = SystemMessage(content="You are the store's agent.\n\nSigned-in customer: raj_sanchez_2970")
ORDER = {"order_id": "#W7736708", "user_id": "raj_sanchez_2970", "status": "delivered",
         "items": [{"name": "Notebook", "product_id": "2892623495", "item_id": "6574183535", "price": 28.14,
                    "options": {"size": "A6"}},
                   {"name": "Jigsaw Puzzle", "product_id": "1808611083", "item_id": "1096508426", "price": 46.13,
                    "options": {"pieces": "500"}}],
         "payment_history": [{"transaction_type": "payment", "amount": 74.27,
                              "payment_method_id": "credit_card_3362387"}]}


def _answer(call: AIMessage, payload: object) -> ToolMessage:
    return ToolMessage(content=json.dumps(payload), tool_call_id=call.tool_calls[0]["id"])


def test_a_return_looks_up_the_order_then_returns_the_named_item_to_the_card_that_paid():
    planner = RetailPlanner()
    messages = [SYSTEM, HumanMessage(content="Please return the notebook from order #W7736708")]
    first = planner.plan(messages)
    assert first.tool_calls[0]["name"] == "get_order_details"
    messages += [first, _answer(first, ORDER)]
    second = planner.plan(messages)
    assert second.tool_calls[0]["name"] == "return_delivered_order_items"
    assert second.tool_calls[0]["args"] == {"order_id": "#W7736708", "item_ids": ["6574183535"],
                                            "payment_method_id": "credit_card_3362387"}
    messages += [second, _answer(second, {"status": "return_requested", "order_id": "#W7736708",
                                          "amount_usd": 28.14, "direction": "refund"})]
    done = planner.plan(messages)
    assert not done.tool_calls and "USD 28.14 will be refunded" in str(done.content)
    # Stateless: a fresh planner given the same messages says the same.
    assert RetailPlanner().plan(messages).content == done.content


def test_an_unnamed_item_is_asked_for_and_the_answer_continues_the_request():
    planner = RetailPlanner()
    messages = [SYSTEM, HumanMessage(content="I want to return something from order #W7736708")]
    first = planner.plan(messages)
    messages += [first, _answer(first, ORDER)]
    question = planner.plan(messages)
    assert str(question.content).endswith("?") and "Jigsaw Puzzle" in str(question.content)
    messages += [question, HumanMessage(content="the jigsaw puzzle")]
    # The reply continues the return (the order already looked up in this request).
    call = planner.plan(messages)
    assert call.tool_calls[0]["name"] == "return_delivered_order_items"
    assert call.tool_calls[0]["args"]["item_ids"] == ["1096508426"]


def test_a_denial_is_reported_and_never_retried():
    planner = RetailPlanner()
    messages = [SYSTEM, HumanMessage(content="Cancel order #W2611340, I no longer need it")]
    first = planner.plan(messages)
    denied = {"status": "denied", "rule": "order-ownership",
              "message": "I could not find order #W2611340 under your account."}
    messages += [first, _answer(first, denied)]
    reply = planner.plan(messages)
    assert not reply.tool_calls and "could not find order #W2611340" in str(reply.content)


def test_the_hand_off_ends_with_the_transfer_sentence():
    planner = RetailPlanner()
    messages = [SYSTEM, HumanMessage(content="I want to talk to a human")]
    call = planner.plan(messages)
    assert call.tool_calls[0]["name"] == "transfer_to_human_agents"
    messages += [call, _answer(call, {"status": "ok", "result": "Transfer successful"})]
    assert planner.plan(messages).content == TRANSFER_MESSAGE


def test_an_address_is_parsed_into_the_tools_fields():
    call = RetailPlanner().plan([SYSTEM, HumanMessage(
        content="Change my address to 10 Main Street, Apt 2, Springfield, IL 62701, USA")])
    assert call.tool_calls[0]["name"] == "modify_user_address"
    assert call.tool_calls[0]["args"] == {"user_id": "raj_sanchez_2970", "address1": "10 Main Street",
                                          "address2": "Apt 2", "city": "Springfield", "state": "IL",
                                          "country": "USA", "zip": "62701"}
