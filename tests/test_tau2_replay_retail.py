"""τ² task replay of the store (issue 11): a fixed sample of the retail tasks through the real guarded graph.

CI replays every third task of ``tasks.json`` (ids 0, 3, 6, …, 111: 38 of the 114), to keep the
run to a couple of minutes on two cores beside the airline's; ``evals/reports/replay_retail.*``
hold all 114 (``airlock eval replay --domain retail``). The sample runs once per module on the
shared Postgres server; the assertions read its report.
"""

from __future__ import annotations

import json

import pytest

from evals.tau2_replay import ReplayError, ReplayReport, render_markdown, replay
from evals.tau2_retail import TASKS_PATH, RetailReplay, resolve_customer, truthful_answer
from tests.test_retail_replay import _reference

pytestmark = pytest.mark.postgres

#: The CI sample: every third task id.
SAMPLE = [str(n) for n in range(0, 114, 3)]
VARIANT_KINDS = {"other-customer", "wrong-status", "forged", "skipped-consent", "replayed-call-id"}
#: The rules a τ² task may meet in the store (the scripted reviewer approves each).
STORE_ESCALATIONS = {"large-refund", "large-charge", "repeated-returns", "human-handoff", "risky-input-write"}


@pytest.fixture(scope="module")
def retail(server_url: str) -> ReplayReport:
    if not TASKS_PATH.is_file():  # the data is part of the checkout's environment (../shared)
        raise AssertionError(f"τ² retail tasks missing: {TASKS_PATH}")
    return replay(RetailReplay(), only=SAMPLE, server=server_url)


def test_the_sample_replays_without_a_run_error(retail: ReplayReport) -> None:
    assert [t.task for t in retail.tasks] == SAMPLE
    assert [(t.task, t.error) for t in retail.tasks if t.error] == []
    # The backend refuses, on the reference run, exactly the expected actions τ²'s own tools
    # refuse (a mistyped lookup, a product id that is an item id): those are not denials.
    assert {t.task: t.reference_refused for t in retail.tasks if t.reference_refused} == upstream_refusals()
    assert len(upstream_refusals()) >= 3


def upstream_refusals() -> dict[str, list[int]]:
    """Return, per sampled task, the expected actions τ²'s upstream tools refuse (run in order)."""
    db_class, tools_class = _reference()
    out: dict[str, list[int]] = {}
    for raw in json.loads(TASKS_PATH.read_text(encoding="utf-8")):
        if raw["id"] not in SAMPLE:
            continue
        tools = tools_class(db_class.load(str(TASKS_PATH.parent / "db.json")))
        refused = []
        for n, action in enumerate(raw["evaluation_criteria"]["actions"] or []):
            try:
                getattr(tools, action["name"])(**action["arguments"])
            except ValueError:
                refused.append(n)
        if refused:
            out[raw["id"]] = refused
    return out


def test_no_expected_action_is_denied(retail: ReplayReport) -> None:
    denials = [(t.task, a.index, a.name, a.status, a.rule, a.reason) for t in retail.tasks for a in t.false_denials]
    assert denials == []
    # Everything the reference executes, the guarded graph executes.
    for t in retail.tasks:
        assert [a.index for a in t.actions if not a.executed] == t.reference_refused, t.task


def test_every_final_state_matches_the_reference(retail: ReplayReport) -> None:
    assert {t.task: t.state_diff for t in retail.tasks if not t.state_matches} == {}
    domain = RetailReplay()
    tasks = {t.id: t for t in domain.load_tasks(domain.tasks_path)}
    # Tasks with a write that runs (task 105's only write is refused, on τ²'s tools too).
    writes = {t.task for t in retail.tasks
              if any(domain.is_write(a) and k not in t.reference_refused for k, a in enumerate(tasks[t.task].actions))}
    initial = {t.expected_hash for t in retail.tasks if t.task not in writes}
    # The writes really happened: a task with writes ends away from the initial state.
    assert len(writes) >= 30 and len(initial) == 1
    assert all(t.state_hash not in initial for t in retail.tasks if t.task in writes)


def test_every_violating_variant_is_stopped(retail: ReplayReport) -> None:
    variants = [v for t in retail.tasks for v in t.variants]
    assert {v.kind for v in variants} == VARIANT_KINDS
    assert len(variants) >= 400
    missed = [(v.task, v.index, v.tool, v.kind, v.label, v.status, v.error) for v in variants if not v.stopped]
    assert missed == []
    refused = {(t.task, k) for t in retail.tasks for k in t.reference_refused}
    for v in variants:
        if (v.task, v.index) in refused:  # a write refused anyway (task 105: a gift card too small)
            assert v.status == "denied", v
            continue
        if v.kind == "skipped-consent":
            assert v.status == "declined_by_user", v
        if v.kind in ("other-customer", "forged", "wrong-status"):
            assert v.status == "denied" and v.rule, v
    # Each store rule the variants aim at is the one that stops them.
    rules = {(v.label.split(" ")[0] if v.kind == "forged" else v.kind, v.rule) for v in variants}
    assert ("other-customer", "order-ownership") in rules
    assert ("wrong-status", "not-pending") in rules and ("wrong-status", "not-delivered") in rules
    assert ("wrong-status", "item-unavailable") in rules
    labels = {v.rule for v in variants if v.kind == "forged"}
    assert {"order-ownership", "payment-not-in-profile", "payment-balance", "same-product", "user-mismatch",
            "refund-destination"} <= labels


def test_escalations_are_listed_with_their_rule(retail: ReplayReport) -> None:
    rules = {e.rule for t in retail.tasks for e in t.escalations}
    assert rules <= STORE_ESCALATIONS
    assert "large-refund" in rules
    text = render_markdown(retail)
    assert "| false denials | 0 |" in text and "| violating variants stopped | " in text


def test_the_customer_is_resolved_from_the_reference_data() -> None:
    raw = {t["id"]: t for t in json.loads(TASKS_PATH.read_text(encoding="utf-8"))}
    assert resolve_customer(raw["0"]) == "yusuf_rossi_9620"  # by name and zip (the expected lookup)
    assert resolve_customer(raw["35"]) == "aarav_santos_2259"  # the first e-mail finds nobody
    assert resolve_customer(raw["24"]) == "sofia_hernandez_5364"  # no action names anyone: the instructions
    conflicting = {**raw["0"], "user_scenario": {"instructions": {"known_info": "You are noah_brown_6181."}}}
    with pytest.raises(ReplayError, match="not resolved"):
        resolve_customer(conflicting)


def test_the_customer_answers_from_the_instructions_only() -> None:
    assert truthful_answer("You insist that the order be cancelled.", "customer_disputes") == "dispute"
    assert truthful_answer("You are calm and polite.", "customer_disputes") == "accept"
    with pytest.raises(ReplayError):
        truthful_answer("", "a_question_nobody_taught")
