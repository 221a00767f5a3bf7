"""τ² task replay (issue 11): every airline task through the real guarded graph, in CI.

The whole airline replay (50 tasks: the expected actions as each task's customer, the state
hash against the directly-applied reference, and every violating variant) runs once per
session on the shared Postgres server; the assertions read its report.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage
from psycopg_pool import ConnectionPool

from evals.tau2_airline import AirlineReplay, first_person, truthful_answer
from evals.tau2_replay import (
    Action,
    ReplayError,
    ReplayReport,
    Task,
    TurnDirector,
    Violation,
    render_markdown,
    replay,
    split_turns,
    state_diff,
    state_hash,
)
from nodes.model.scripted import ScriptExhaustedError

pytestmark = pytest.mark.postgres

# The τ² airline tasks whose expected actions write (book, cancel, change, bags, passengers).
WRITE_TASKS = {"7", "8", "11", "12", "14", "15", "16", "17", "18", "19", "20", "21", "22", "23", "24",
               "25", "29", "30", "32", "33", "35", "37", "39", "40", "42", "44"}
VARIANT_KINDS = {"other-customer", "wrong-status", "forged", "skipped-consent", "replayed-call-id"}


@pytest.fixture(scope="module")
def airline(server_url: str) -> ReplayReport:
    domain = AirlineReplay()
    if not domain.tasks_path.is_file():  # the data is part of the checkout's environment (../shared)
        raise AssertionError(f"τ² airline tasks missing: {domain.tasks_path}")
    return replay(domain, server=server_url)


def test_every_task_replays_without_a_run_error(airline: ReplayReport) -> None:
    assert len(airline.tasks) == 50
    assert [(t.task, t.error, t.reference_errors) for t in airline.tasks if t.error or t.reference_errors] == []
    assert sum(len(t.actions) for t in airline.tasks) == 142


def test_no_expected_action_is_denied(airline: ReplayReport) -> None:
    denials = [(t.task, a.index, a.name, a.status, a.rule, a.reason) for t in airline.tasks for a in t.false_denials]
    assert denials == []


def test_every_final_state_matches_the_reference(airline: ReplayReport) -> None:
    differ = {t.task: t.state_diff for t in airline.tasks if not t.state_matches}
    assert differ == {}
    # The writes really happened: a task with writes ends away from the initial state.
    initial = {t.expected_hash for t in airline.tasks if t.task not in WRITE_TASKS}
    assert len(initial) == 1
    assert all(t.state_hash not in initial for t in airline.tasks if t.task in WRITE_TASKS)


def test_every_violating_variant_is_stopped(airline: ReplayReport) -> None:
    variants = [v for t in airline.tasks for v in t.variants]
    assert {v.kind for v in variants} == VARIANT_KINDS
    assert len(variants) >= 300
    missed = [(v.task, v.index, v.tool, v.kind, v.label, v.status, v.error) for v in variants if not v.stopped]
    assert missed == []
    # Stopped by the tool guard, not by luck: each kind by the mechanism meant to stop it.
    for v in variants:
        if v.kind == "skipped-consent":
            assert v.status == "declined_by_user", v
        if v.kind in ("other-customer", "forged", "wrong-status"):
            assert v.status == "denied" and v.rule, v


def test_escalations_are_listed_with_their_rule(airline: ReplayReport) -> None:
    rules = {e.rule for t in airline.tasks for e in t.escalations}
    handoff = next(t for t in airline.tasks if t.task == "13")
    assert [e.rule for e in handoff.escalations] == ["human-handoff"]
    assert "large-charge" in rules
    text = render_markdown(airline)
    assert "| false denials | 0 |" in text and "human-handoff" in text


class _Control(AirlineReplay):
    """The airline, with one 'violation' that is in fact the compliant call, confirmed."""

    def violations(self, task: Task, index: int, pool: ConnectionPool) -> list[Violation]:
        action = task.actions[index]
        if not self.is_write(action):
            return []
        return [Violation(kind="control", label="the expected call itself", action=action, user_id=task.user_id)]


def test_a_write_that_goes_through_is_not_counted_as_stopped(server_url: str) -> None:
    """The measurement can fail: the compliant booking of task 20, sent as a 'variant', is caught writing."""
    report = replay(_Control(), only=["20"], server=server_url)
    (task,) = report.tasks
    control = task.variants[0]
    assert control.kind == "control" and control.status not in ("denied", "declined_by_user", "not_reached")
    assert not control.state_unchanged and not control.stopped


def test_state_hash_ignores_row_order_and_names_the_rows_that_differ() -> None:
    a = {"t": ["k1:aa", "k2:bb"]}
    assert state_hash(a) == state_hash({"t": ["k1:aa", "k2:bb"]})
    assert state_hash(a) != state_hash({"t": ["k1:aa", "k2:bc"]})
    assert state_diff({"t": ["k1:aa", "k2:bc"]}, a) == {"t": ["k2"]}


def test_the_customer_answers_from_the_instructions_only() -> None:
    assert truthful_answer("You are sick.", "cancel_reason") == "health"
    assert truthful_answer("You booked it by mistake.", "cancel_reason") == "other"
    assert truthful_answer("you want to proceed anyway", "customer_disputes") == "dispute"
    assert truthful_answer("You are calm.", "customer_disputes") == "accept"
    with pytest.raises(ReplayError):
        truthful_answer("", "a_question_nobody_taught")
    assert first_person("You want to cancel your trip. your mother is sick.") == \
        "I want to cancel my trip. My mother is sick."


def test_tasks_name_their_customer_and_actions() -> None:
    domain = AirlineReplay()
    tasks = {t.id: t for t in domain.load_tasks(domain.tasks_path)}
    assert tasks["7"].user_id == "daiki_muller_1116"  # quoted in the instructions
    assert tasks["13"].actions == (Action(name="transfer_to_human_agents",
                                          args=tasks["13"].actions[0].args),)
    assert {t.id for t in tasks.values() if any(domain.is_write(a) for a in t.actions)} == WRITE_TASKS


def test_a_turn_ends_after_each_write_and_holds_at_most_eight_calls() -> None:
    def is_write(action: Action) -> bool:
        return action.name.startswith("update")

    read, write = Action(name="get", args={}), Action(name="update", args={})
    actions = [read] * 10 + [write, read, write, write]
    assert split_turns(actions, is_write) == [list(range(8)), [8, 9, 10], [11, 12], [13]]
    assert split_turns([], is_write) == [[]]


def test_the_scripted_model_fails_loudly_past_its_turn() -> None:
    director = TurnDirector()
    director.load([AIMessage(content="done")])
    assert director([]).content == "done"
    with pytest.raises(ScriptExhaustedError, match="script exhausted"):
        director([AIMessage(content="one more?")])
