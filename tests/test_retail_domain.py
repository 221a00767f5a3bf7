"""The store's plugin pieces without a database: schemas, policy validation, PII identifiers, describe_call."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import tools.retail as retail
from graph.policy import PolicyError, load_policy
from nodes.guards.pii import mask_text
from tools.retail.describe import describe_call
from tools.retail.pii import POLICY_ALLOW_PATTERNS
from tools.retail.prompt import conversation_facts
from tools.retail.schemas import parse_args


def test_the_policy_loads_with_the_engines_loader_and_guards_every_write():
    policy = load_policy(retail.POLICY_PATH, known_tools=retail.RETAIL_TOOLS, facts=retail.default_facts())
    for name in retail.WRITE_TOOLS:
        kinds = [type(g).__name__ for g in policy.tools[name]]
        assert kinds == ["PreToolGuardrail", "IdempotencyGuardrail", "ConfirmGuardrail", "ResilienceGuardrail"], name
    ids = {e.id for e in policy.escalations}
    assert {"large-refund", "repeated-returns", "human-handoff"} <= ids
    # Disputes escalate from the pre-tool rules (the customer's stated answer).
    assert any(c.action == "escalate" for c in policy.tools["cancel_pending_order"][0].checks)  # type: ignore[attr-defined]


def test_a_rule_on_a_fact_the_store_does_not_compute_is_refused(tmp_path: Path):
    text = retail.POLICY_PATH.read_text(encoding="utf-8").replace(
        '"!facts.order.pending"', '"!facts.order.is_pending"', 1)
    bad = tmp_path / "policy.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match="is_pending"):
        load_policy(bad, known_tools=retail.RETAIL_TOOLS, facts=retail.default_facts())


def test_the_policy_lists_the_stores_identifiers_for_the_pii_layer():
    data = yaml.safe_load(retail.POLICY_PATH.read_text(encoding="utf-8"))
    pii = next(layer for layer in data["guards"]["input"] if layer["layer"] == "pii")
    assert tuple(pii["params"]["allow_patterns"]) == POLICY_ALLOW_PATTERNS


def test_the_stores_ids_are_not_masked_but_a_phone_number_is():
    text = ("I am raj_sanchez_2970, call me on 415 555 0132. Order #W4566809 (or W7736708), "
            "item 6574183535, refund to credit_card_3362387.")
    masked, _ = mask_text(text, allow_patterns=POLICY_ALLOW_PATTERNS)
    for kept in ("raj_sanchez_2970", "#W4566809", "W7736708", "6574183535", "credit_card_3362387"):
        assert kept in masked, masked
    assert "415 555 0132" not in masked
    # A bare ten-digit number without a cue may be a phone number: it is not let through.
    assert "4155550132" not in mask_text("my number is 4155550132", allow_patterns=POLICY_ALLOW_PATTERNS)[0]


@pytest.mark.parametrize(("tool", "args", "field"), [
    ("get_order_details", {"order_id": "W4566809"}, "order_id"),
    ("cancel_pending_order", {"order_id": "#W4566809", "reason": "too expensive"}, "reason"),
    ("return_delivered_order_items", {"order_id": "#W7736708", "item_ids": [], "payment_method_id": "x"}, "item_ids"),
    ("return_delivered_order_items", {"order_id": "#W7736708", "item_ids": ["6574183535"],
                                      "payment_method_id": "credit_card_3362387", "amount": 1}, "amount"),
    ("modify_user_address", {"user_id": "u", "address1": "", "address2": "", "city": "c", "state": "s",
                             "country": "c", "zip": "1"}, "address1"),
])
def test_invalid_arguments_are_refused_by_the_schema(tool, args, field):
    with pytest.raises(retail.ToolError, match=field):
        parse_args(tool, args)


def test_calls_are_described_without_tool_names_or_payment_ids():
    facts = {"quote": {"amount_usd": 28.14, "direction": "refund", "to": "Mastercard ending 2130",
                       "settles": "when the items are received"}}
    line = describe_call("return_delivered_order_items", {"order_id": "#W7736708", "item_ids": ["6574183535"],
                                                          "payment_method_id": "credit_card_3362387"}, facts)
    assert line == ("Return 1 item of order #W7736708 · USD 28.14 refunded to Mastercard ending 2130 "
                    "when the items are received")
    for tool in retail.RETAIL_TOOLS:
        text = describe_call(tool, {"order_id": "#W1", "item_ids": ["1"], "reason": "no longer needed"})
        assert "_" not in text, text


def test_conversation_facts_come_from_the_customers_words():
    assert conversation_facts(["I am noah_brown_6181", "and raj_sanchez_2970, noah_brown_6181"]) == {
        "user_ids_mentioned": ["noah_brown_6181", "raj_sanchez_2970"]}


def test_the_plugin_entry_point_names_every_piece():
    assert retail.MIGRATIONS_DIR.is_dir() and (retail.MIGRATIONS_DIR / "001_retail.sql").is_file()
    assert retail.DEMO_ACCOUNTS_PATH.is_file() and (retail.DATA_DIR / "db.json.gz").is_file()
    assert (retail.DATA_DIR / "LICENSE-tau2-bench").is_file()
    planner = retail.make_planner()
    assert planner.bind_tools(retail.langchain_tools()) is planner
    assert {t["function"]["name"] for t in retail.langchain_tools()} == set(retail.RETAIL_TOOLS)
    try:
        from graph.domain import DomainPlugin  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return  # the engine has no domain port yet: the pieces above are what it will wire
    plugin = retail.plugin()
    assert isinstance(plugin, DomainPlugin) and plugin.name == "retail"
    assert plugin.tools is retail.RETAIL_TOOLS and plugin.migrations == retail.MIGRATIONS_DIR
