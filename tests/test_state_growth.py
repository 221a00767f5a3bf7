"""Issue 13, "state that stays small": per-turn records live in tables, the checkpoint stays bounded.

Guard decisions are rows of ``guard_decisions`` (the graph state keeps only the current
turn's), earlier turns' messages live in ``thread_messages`` (the state keeps the current
turn), and the model sees at most ``model.history.max_messages`` earlier messages, never cut
between a tool call and its answers. Sizes are measured from the checkpoint tables.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from graph.policy import PolicyError, load_policy
from tests.helpers import RES, USER, bags_call, make_app, make_services, summarise
from tools.airline import POLICY_PATH

pytestmark = pytest.mark.postgres


@pytest.fixture
def services(database_url):
    s = make_services(database_url)
    yield s
    s.close()


def _checkpoint_bytes(services, thread_id: str) -> int:
    """Return every byte the checkpoint tables hold for one thread."""
    with services.pool.connection() as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_blobs WHERE thread_id = %(t)s)"
            " + (SELECT coalesce(sum(octet_length(blob)), 0) FROM checkpoint_writes WHERE thread_id = %(t)s)"
            " + (SELECT coalesce(sum(octet_length(checkpoint::text) + octet_length(metadata::text)), 0)"
            "    FROM checkpoints WHERE thread_id = %(t)s) AS n",
            {"t": thread_id},
        ).fetchone()
    return int(row["n"])


def _decision_rows(services, thread_id: str) -> list[dict]:
    with services.pool.connection() as conn:
        return [dict(r) for r in conn.execute(
            "SELECT task_id, idx, decision FROM guard_decisions WHERE thread_id = %s ORDER BY step, id",
            (thread_id,),
        ).fetchall()]


def test_checkpoint_bytes_added_per_turn_stay_constant(services):
    from graph.service import AirlockApp

    app = AirlockApp(services=services)  # the offline planner: real tool calls, real guards
    thread = app.new_thread(user_id=USER)
    texts = [f"Show me reservation {RES}", "What is the baggage allowance?"]
    added: dict[int, int] = {}
    before = _checkpoint_bytes(services, thread)
    for turn in range(1, 31):
        app.send(thread_id=thread, user_id=USER, text=texts[turn % 2])
        now = _checkpoint_bytes(services, thread)
        added[turn] = now - before
        before = now
    # Same kind of turn (odd turns are lookups); the whole history would add ~6x more by turn 30.
    assert added[29] <= added[5] * 1.15 + 1024, added
    assert added[30] <= added[6] * 1.15 + 1024, added
    # ... and the whole conversation is still there for the UI.
    view = app.view(thread_id=thread, user_id=USER)
    assert sum(isinstance(m, HumanMessage) for m in view.messages) == 30


def test_earlier_turns_decisions_stay_visible_while_the_state_keeps_the_current_turn(services):
    from graph.service import AirlockApp

    app = AirlockApp(services=services)
    thread = app.new_thread(user_id=USER)
    first = app.send(thread_id=thread, user_id=USER, text=f"Show me reservation {RES}")
    first_count = len(first.decisions)
    assert first_count > 0
    for _ in range(3):
        app.send(thread_id=thread, user_id=USER, text="What is the baggage allowance?")
    view = app.view(thread_id=thread, user_id=USER)
    # The whole thread's decisions, in order: the first turn's come first.
    assert view.decisions[:first_count] == first.decisions
    assert [d for d in view.decisions if d.get("stage") == "input" and d.get("layer") == "prefilter"].__len__() == 4
    assert view.decisions == app.decisions(thread)
    # The graph state holds only the last turn's decisions.
    state = app.graph.get_state(app._config(thread)).values
    assert 0 < len(state["decisions"]) < len(view.decisions)
    assert len(_decision_rows(services, thread)) == len(view.decisions)


def test_a_hitl_resume_does_not_duplicate_decision_rows(services):
    app, _ = make_app(services, [bags_call(11, 10), summarise])
    thread = app.new_thread(user_id=USER)
    paused = app.send(thread_id=thread, user_id=USER, text=f"add bags to {RES}")
    gate = paused.pending[0]
    assert gate.kind == "confirm"
    during = _decision_rows(services, thread)
    done = app.answer_confirm(thread_id=thread, user_id=USER, interrupt_id=gate.id, action="confirm")
    assert not done.pending
    rows = _decision_rows(services, thread)
    keys = [(r["task_id"], r["idx"]) for r in rows]
    assert len(keys) == len(set(keys))
    # The input guard's rows were written once; the tool task's once, when it finished.
    assert rows[: len(during)] == during
    assert [r["decision"] for r in rows] == done.decisions
    assert any(d.get("guardrail") == "confirm" for d in done.decisions)
    assert sum(d.get("guardrail") == "confirm" for d in done.decisions) == 1


def _policy_with(tmp_path: Path, model: object) -> Path:
    data = yaml.safe_load(POLICY_PATH.read_text())
    data["model"] = model
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("bad", [{"history": {"max_messages": 0}}, {"history": {"max_messages": "many"}},
                                 {"history": {"max_mesages": 10}}])
def test_history_setting_is_validated_at_load(tmp_path, bad):
    path = _policy_with(tmp_path, bad)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    text = path.read_text().splitlines()
    assert err.value.path == str(path)
    assert err.value.line is not None and "max_mes" in text[err.value.line - 1]
    assert "model.history" in err.value.location and err.value.reason


def test_history_setting_loads(tmp_path):
    policy = load_policy(_policy_with(tmp_path, {"history": {"max_messages": 12}}))
    assert policy.model.history.max_messages == 12
    assert load_policy(POLICY_PATH).model.history.max_messages >= 2


def test_history_window_never_separates_a_tool_call_from_its_answers():
    from nodes.agent import history_window

    call = AIMessage(content="", tool_calls=[{"name": "t", "args": {}, "id": "c1"},
                                             {"name": "t", "args": {}, "id": "c2"}])
    history = [HumanMessage(content="a", id="h1"), AIMessage(content="b", id="a1"),
               HumanMessage(content="c", id="h2"), call,
               ToolMessage(content="r1", tool_call_id="c1"), ToolMessage(content="r2", tool_call_id="c2"),
               AIMessage(content="done", id="a2")]
    for limit in range(1, 8):
        window = history_window(history, limit)
        assert len(window) <= limit
        assert window == history[len(history) - len(window):]
        assert not window or not isinstance(window[0], ToolMessage), (limit, window)
    assert history_window(history, 3) == [history[-1]]  # two tool answers would lose their call
    assert history_window(history, 4) == history[-4:]
    assert history_window(history, None) == history


def test_the_model_is_sent_the_history_window_and_the_ui_the_whole_conversation(tmp_path, database_url):
    from langchain_core.messages import SystemMessage

    from nodes.model.scripted import ScriptedChatModel

    services = make_services(database_url, policy=_policy_with(tmp_path, {"history": {"max_messages": 6}}))
    try:
        model = ScriptedChatModel(script=[AIMessage(content=f"answer {i}") for i in range(12)])
        app, _ = make_app(services, model=model)
        thread = app.new_thread(user_id=USER)
        for i in range(12):
            app.send(thread_id=thread, user_id=USER, text=f"question number {i}")
        sent = model.calls
        assert len(sent) == 12
        last = sent[-1]
        assert isinstance(last[0], SystemMessage)
        # Six earlier messages (three turns) and this turn's question.
        assert [m.content for m in last[1:]] == [
            "question number 8", "answer 8", "question number 9", "answer 9", "question number 10",
            "answer 10", "question number 11"]
        shown = app.view(thread_id=thread, user_id=USER).messages
        assert [m.content for m in shown if isinstance(m, HumanMessage)] == [f"question number {i}" for i in range(12)]
        assert len(shown) == 24
    finally:
        services.close()


def test_a_task_recorded_again_replaces_its_rows(pool):
    from graph.records import DecisionLog

    log = DecisionLog(pool)
    log.record(thread_id="t1", task_id="a", step=1, node="guard_input", decisions=[{"n": 1}, {"n": 2}])
    log.record(thread_id="t1", task_id="b", step=2, node="call_model", decisions=[{"n": 3}])
    assert log.for_thread("t1") == [{"n": 1}, {"n": 2}, {"n": 3}]
    # The same task re-run (a crash after its rows were written): replaced in place, never doubled.
    log.record(thread_id="t1", task_id="a", step=1, node="guard_input", decisions=[{"n": 9}])
    assert log.for_thread("t1") == [{"n": 9}, {"n": 3}]
    assert DecisionLog(pool).for_thread("t1") == [{"n": 9}, {"n": 3}]  # another process's view


def test_moving_a_turn_twice_stores_it_once(services):
    transcript = services.transcript
    turn = [HumanMessage(content="hello", id="m1"), AIMessage(content="hi", id="m2")]
    transcript.archive("t1", turn)
    transcript.archive("t1", turn)  # the input guard re-run after a crash
    transcript.archive("t1", [AIMessage(content="more", id="m3")])
    assert [m.id for m in transcript.messages("t1")] == ["m1", "m2", "m3"]
    assert [m.content for m in transcript.tail("t1", 2)] == ["hi", "more"]
    assert transcript.customer_texts("t1") == ["hello"]
    with services.pool.connection() as conn:
        blobs = [bytes(r["blob"]) for r in conn.execute("SELECT blob FROM thread_messages").fetchall()]
    assert not any(b"hello" in b for b in blobs)  # encrypted like the checkpoint


def test_a_turn_moved_before_a_crash_is_shown_once(services):
    from graph.service import AirlockApp

    app = AirlockApp(services=services)
    thread = app.new_thread(user_id=USER)
    for _ in range(2):
        app.send(thread_id=thread, user_id=USER, text="What is the baggage allowance?")
    whole = [m.id for m in app.view(thread_id=thread, user_id=USER).messages]
    # The input guard moved the last turn and the process died before the checkpoint dropped it.
    state = app.graph.get_state(app._config(thread)).values["messages"]
    services.transcript.archive(thread, state)
    assert [m.id for m in app.view(thread_id=thread, user_id=USER).messages] == whole
    after = app.send(thread_id=thread, user_id=USER, text="What is the baggage allowance?")
    ids = [m.id for m in app.view(thread_id=thread, user_id=USER).messages]
    assert ids[: len(whole)] == whole and len(ids) == len(set(ids)) == len(whole) + len(after.messages)


def test_a_call_left_unanswered_stays_in_the_state_for_its_repair():
    from nodes.input_guard import finished_turns

    dangling = AIMessage(content="", id="a2", tool_calls=[{"name": "t", "args": {}, "id": "c9"}])
    history = [HumanMessage(content="a", id="h1"), AIMessage(content="b", id="a1"),
               HumanMessage(content="c", id="h2"), dangling, HumanMessage(content="d", id="h3")]
    assert finished_turns(history, {"h3"}) == 3  # h1, a1, h2 move; the call and the new turn stay
    answered = [*history[:4], ToolMessage(content="r", tool_call_id="c9", id="t1"), history[4]]
    assert finished_turns(answered, {"h3"}) == 5


def test_conversation_facts_still_read_every_customer_message():
    from nodes.agent import RouteAfterModel

    seen: list[list[str]] = []

    def facts(texts):
        seen.append(list(texts))
        return {}

    route = RouteAfterModel(conversation_facts=facts, earlier_texts=lambda thread_id: [f"earlier in {thread_id}"])
    state = {"messages": [HumanMessage(content="now", id="h9"),
                          AIMessage(content="", id="a9", tool_calls=[{"name": "t", "args": {}, "id": "c1"}])]}
    sends = route(state, {"configurable": {"thread_id": "t7"}})
    assert len(sends) == 1 and seen == [["earlier in t7", "now"]]
