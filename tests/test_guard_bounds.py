"""Bounded work per input: a length cap before any layer, chunked scanning, a per-layer time budget.

Nothing here reads a wall clock: the pipeline takes its clock as a parameter, and the tests give
it one that advances by a fixed step per reading, so "this layer took 3 s" is a fact of the test,
not of the machine. The work a pathological text causes is measured in chunks scanned.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest
from langchain_core.messages import AIMessage

import nodes.guards.pii as pii
from graph.policy import GuardLimits
from nodes.guards.base import Action, GuardContext, GuardResult, register_guard
from nodes.guards.bounds import CHUNK_CHARS, CHUNK_OVERLAP, MAX_TOKEN_CHARS, blank_long_tokens, text_chunks
from nodes.guards.pipeline import GuardPipeline, LayerSpec
from nodes.guards.vault import InMemoryVault
from tests.helpers import BASIC_USER, USER, make_app, make_services, policy_with_guards


class StepClock:
    """A clock that advances ``step`` seconds at every reading (deterministic 'elapsed' time)."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


SEEN: list[int] = []


@register_guard("test_probe")
class Probe:
    """Allows everything and records the length of what it read."""

    name: ClassVar[str] = "test_probe"

    def check(self, text: str, ctx: GuardContext) -> GuardResult:
        SEEN.append(len(text))
        return GuardResult(action=Action.ALLOW, layer=self.name)


def test_a_layer_over_its_budget_gets_the_fail_safe_decision_and_it_is_audited():
    # Each clock reading is 2 s later: every layer "takes" 2 s against a 1 s budget.
    pipeline = GuardPipeline(layers=[LayerSpec(name="test_probe")], layer_budget_ms=1000, clock=StepClock(2.0))
    result = pipeline.run("hello")
    assert result.action is Action.BLOCK and result.reason == "layer_budget:test_probe"
    audit = result.to_audit()["layers"][0]
    assert audit["metadata"] == {"budget_ms": 1000, "elapsed_ms": 2000.0}
    # A fail-open layer over budget is let through, and says so.
    lenient = GuardPipeline(layers=[LayerSpec(name="test_probe", fail_open=True)], layer_budget_ms=1000,
                            clock=StepClock(2.0))
    assert lenient.run("hello").decisions[0].reason == "layer_budget_fail_open"
    # Its own budget wins over the pipeline's; without a budget nothing changes.
    own = GuardPipeline(layers=[LayerSpec(name="test_probe", budget_ms=5000)], layer_budget_ms=1000,
                        clock=StepClock(2.0))
    assert own.run("hello").action is Action.ALLOW
    assert GuardPipeline(layers=[LayerSpec(name="test_probe")], clock=StepClock(2.0)).run("x").action is Action.ALLOW


def test_a_text_over_the_cap_is_blocked_before_any_layer_reads_it():
    SEEN.clear()
    pipeline = GuardPipeline(layers=[LayerSpec(name="test_probe")], max_chars=100)
    assert pipeline.run("x" * 100).action is Action.ALLOW
    result = pipeline.run("x" * 101)
    assert result.action is Action.BLOCK and result.reason == "length" and result.layer == "limits"
    assert SEEN == [100]


def test_a_pathological_message_is_cut_off_after_one_chunk(monkeypatch):
    """One slow message cannot hold the process: the PII layer stops at its deadline between chunks.

    The clock advances 1 s per reading and the budget is 1.5 s, so the layer may scan one chunk
    and must stop at the next check: the work done is one chunk of the text's many.
    """
    scanned: list[int] = []
    real = pii._detect_chunk

    def counting(text: str, *args: Any) -> Any:
        scanned.append(len(text))
        return real(text, *args)

    monkeypatch.setattr(pii, "_detect_chunk", counting)
    text = "Abc " * 5000  # every word a name candidate: NER over all of it
    pipeline = GuardPipeline(layers=[LayerSpec(name="pii")], layer_budget_ms=1500, clock=StepClock(1.0))
    result = pipeline.run(text, GuardContext(vault=InMemoryVault()))
    assert result.action is Action.BLOCK and result.reason == "layer_budget:pii"
    assert len(scanned) == 1 and scanned[0] <= CHUNK_CHARS
    assert len(list(text_chunks(text))) > 10


def test_chunks_cover_the_text_with_overlap_and_bounded_size():
    text = ("word " * 700) + ("x" * 5000) + (" tail" * 300)
    chunks = list(text_chunks(text))
    assert all(len(c) <= CHUNK_CHARS for _, c in chunks)
    assert chunks[0][0] == 0 and chunks[-1][0] + len(chunks[-1][1]) == len(text)
    for (o1, c1), (o2, _) in zip(chunks, chunks[1:], strict=False):
        assert o2 <= o1 + len(c1) - CHUNK_OVERLAP and o2 > o1
        assert text[o2:o1 + len(c1)] == c1[o2 - o1:]


def test_pii_found_across_chunk_cuts_is_masked_once_each():
    emails = [f"person{i}@example.com" for i in range(120)]
    text = " ".join(f"filler words here and there, write to {e} today." for e in emails)
    assert len(text) > 3 * CHUNK_CHARS
    spans = pii.detect(text, entities=["EMAIL_ADDRESS"])
    assert [text[s.start:s.end] for s in spans] == emails


def test_ner_reads_no_token_longer_than_the_bound():
    text = "Call John Smith about " + "a." * 3000 + " and Mary"
    blanked = blank_long_tokens(text)
    assert len(blanked) == len(text)
    assert max(len(t) for t in blanked.split()) <= MAX_TOKEN_CHARS
    assert "John Smith" in blanked


def test_limits_are_validated():
    with pytest.raises(ValueError):
        GuardLimits(input=0)
    with pytest.raises(ValueError):
        GuardPipeline(layers=[], max_chars=0)


def test_the_tool_result_scanner_stops_at_its_deadline_between_segments(monkeypatch):
    from nodes.guards.output import ToolResultInjection

    flagged: list[int] = []
    real = ToolResultInjection._flag

    def counting(self: Any, segment: str, *args: Any) -> bool:
        flagged.append(len(segment))
        return bool(real(self, segment, *args))

    monkeypatch.setattr(ToolResultInjection, "_flag", counting)
    text = "The flight leaves at noon from gate four. " * 100
    pipeline = GuardPipeline(layers=[LayerSpec(name="tool_result_injection")], layer_budget_ms=1500,
                             clock=StepClock(1.0))
    result = pipeline.run(text, GuardContext(direction="tool_result"))
    assert result.action is Action.BLOCK and result.reason == "layer_budget:tool_result_injection"
    assert len(flagged) == 1


PARKED, RELEASE = threading.Event(), threading.Event()


@register_guard("test_park")
class ParkingLayer:
    """Holds any message that says "slow" until the test releases it: a guard stuck on one text."""

    name: ClassVar[str] = "test_park"

    def __init__(self, **_: Any) -> None:
        pass

    def check(self, text: str, ctx: GuardContext) -> GuardResult:
        if "slow" in text:
            PARKED.set()
            if not RELEASE.wait(timeout=120):  # a hang guard: the test failed before releasing it
                raise RuntimeError("never released")
        return GuardResult(action=Action.ALLOW, layer=self.name)


@pytest.mark.postgres
def test_one_slow_message_never_delays_another_customers_turn(database_url, tmp_path):
    """While one customer's message is stuck in a guard, another customer's whole turn completes.

    Nothing in the process may serialise turns (a lock around the pipeline, the model or the
    checkpointer): customer A's message is held inside the input guard, and customer B's turn
    must finish — guards, model, checkpoints, audit — before A is released. Together with the
    bounded work per input above, one message cannot hold the others up.
    """
    policy = policy_with_guards(tmp_path, input=[{"layer": "prefilter"}, {"layer": "test_park"}])
    services = make_services(database_url, policy=policy)
    PARKED.clear()
    RELEASE.clear()
    try:
        # The model answers B first: A cannot reach it while it is held in the guard.
        app, model = make_app(services, [AIMessage(content="Hi B!"), AIMessage(content="Hi A!")])
        thread_a, thread_b = app.new_thread(user_id=USER), app.new_thread(user_id=BASIC_USER)
        with ThreadPoolExecutor(max_workers=2) as pool:
            turn_a = pool.submit(app.send, thread_id=thread_a, user_id=USER, text="a slow message")
            assert PARKED.wait(timeout=60), "customer A's message never reached the guard"
            turn_b = pool.submit(app.send, thread_id=thread_b, user_id=BASIC_USER, text="hello there")
            try:
                reply_b = turn_b.result(timeout=60).reply
                a_still_held = not turn_a.done()
            finally:
                RELEASE.set()
            assert a_still_held and reply_b == "Hi B!"  # B finished while A was still held
            assert turn_a.result(timeout=60).reply == "Hi A!"
        assert model.call_count == 2
    finally:
        RELEASE.set()
        services.close()
