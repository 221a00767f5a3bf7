"""Hypothesis fuzz target: adversarial shapes up to the limits, through every layer of the shipped pipelines.

The project measures no wall-clock time in tests, so this asserts what bounds the time instead,
deterministically: no layer reads more than its pipeline's ``max_chars``, no PII recogniser
reads more than a chunk, spaCy never tokenises a token longer than the bound, and every text
gets a decision. Timings are recorded as hypothesis events (``--hypothesis-show-statistics``);
the "no input over 100 ms" check is ``python -m evals.fuzz``, whose numbers depend on the machine.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import nodes.guards.pii as pii
from evals.fuzz import SHAPES, shape_text
from graph.policy import load_policy
from graph.runtime import build_pipeline
from nodes.guards.base import Action, GuardContext
from nodes.guards.bounds import CHUNK_CHARS, MAX_TOKEN_CHARS
from nodes.guards.vault import InMemoryVault
from tools.airline import POLICY_PATH

ADVERSARIAL = " \t\n\u00a0\u3000!?.,;:-_*#'\"`()[]{}<>/\\|@&%$^~+=aZ09Жبב中😀é\u200b\u202e"
KINDS = ("input", "output", "tool_result")


@pytest.fixture(scope="module")
def pipelines() -> dict[str, Any]:
    guards = load_policy(POLICY_PATH).guards
    return {
        "input": build_pipeline([g for g in guards.input if g.layer != "safety"], max_chars=guards.max_chars.input),
        "output": build_pipeline(guards.output, max_chars=guards.max_chars.output),
        "tool_result": build_pipeline(guards.tool_result, max_chars=guards.max_chars.tool_result),
    }


@pytest.fixture(scope="module")
def reads(pipelines: dict[str, Any]) -> dict[str, int]:
    """Record the longest text each PII chunk scan and each spaCy tokenisation received."""
    longest = {"chunk": 0, "token": 0}
    real_chunk = pii._detect_chunk

    def chunk(text: str, *args: Any) -> Any:
        longest["chunk"] = max(longest["chunk"], len(text))
        return real_chunk(text, *args)

    engine = pii.get_analyzer().nlp_engine
    patched = []
    for nlp in engine.nlp.values():  # type: ignore[attr-defined]
        real_make_doc = nlp.make_doc

        def make_doc(text: str, _real: Any = real_make_doc) -> Any:
            tokens = re.findall(r"\S+", text)
            longest["token"] = max([longest["token"], *(len(t) for t in tokens)])
            return _real(text)

        nlp.make_doc = make_doc
        patched.append((nlp, real_make_doc))
    pii._detect_chunk = chunk  # type: ignore[assignment]
    yield longest
    pii._detect_chunk = real_chunk  # type: ignore[assignment]
    for nlp, real in patched:
        nlp.make_doc = real


@st.composite
def adversarial(draw: st.DrawFn, limit: int) -> str:
    if draw(st.booleans()):
        shape = draw(st.sampled_from(sorted(SHAPES)))
        size = draw(st.one_of(st.integers(1, limit), st.sampled_from([limit, limit // 2, CHUNK_CHARS + 1])))
        return shape_text(shape, size, draw(st.integers(0, 3)))
    unit = draw(st.text(alphabet=ADVERSARIAL, min_size=1, max_size=8))
    return (unit * (draw(st.integers(1, limit)) // len(unit) + 1))[:draw(st.integers(1, limit))]


def _bucket(ms: float) -> str:
    return next(f"< {b} ms" for b in (10, 100, 1000, 10**9) if ms < b)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_every_layer_reads_bounded_text(pipelines, reads, kind):
    pipeline = pipelines[kind]
    limit = pipeline.max_chars

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(text=adversarial(limit + 50))
    # spaCy tokenises only texts NER or the context enhancer reads: one that surely has names.
    @example(text="Hello, I am travelling with Maria Lopez and Tom Baker next week.")
    def run(text: str) -> None:
        t0 = time.perf_counter()
        result = pipeline.run(text, GuardContext(direction=kind, vault=InMemoryVault()))
        event(f"{kind} pipeline {_bucket((time.perf_counter() - t0) * 1000)}")
        assert result.action in set(Action)
        if len(text) > limit:
            assert [d.layer for d in result.decisions] == ["limits"]
        assert reads["chunk"] <= CHUNK_CHARS
        assert reads["token"] <= MAX_TOKEN_CHARS

    run()
    assert reads["chunk"] > 0 and reads["token"] > 0  # the PII layer and spaCy did read the texts
