"""One policy engine: conditions compiled once at load and kept; one layer converter; refs checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from graph.cel import CelError, Condition
from graph.policy import PolicyError, load_policy
from graph.runtime import build_pipeline
from graph.state import INPUT_RISK_KEY, input_risk_fact
from nodes.guardrails.steps import Decider
from nodes.guards.pipeline import LayerSpec, layer_specs
from tools.airline import AIRLINE_TOOLS, POLICY_PATH
from tools.airline.facts import default_facts

SHIPPED = POLICY_PATH.read_text("utf-8")
TOOL_RESULT = "    - layer: tool_result_injection\n      params: {on_detect: modify}\n"


def _load(path: Path):
    return load_policy(path, known_tools=AIRLINE_TOOLS, facts=default_facts())


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    assert old in SHIPPED, old
    path = tmp_path / "policy.yaml"
    path.write_text(SHIPPED.replace(old, new, 1), "utf-8")
    return path


def _line_of(path: Path, fragment: str) -> int:
    return next(i for i, line in enumerate(path.read_text("utf-8").splitlines(), start=1) if fragment in line)


def test_every_condition_is_compiled_at_load_and_never_again(monkeypatch):
    policy = _load(POLICY_PATH)
    sources = [source for _, source in policy.condition_sources()]
    assert sources and all(policy.condition(s) is policy.condition(s) for s in sources)

    def no_compiling(source: str) -> Condition:
        raise AssertionError(f"compiled at run time: {source}")

    monkeypatch.setattr(Condition, "compile", staticmethod(no_compiling))
    decider = Decider(policy=policy, reviewer=None)
    facts = {**default_facts(), INPUT_RISK_KEY: input_risk_fact(None)}
    for tool in policy.tools:
        variables = {"args": {}, "facts": facts}
        # Evaluating may fail on the empty args (fail closed); compiling must not happen.
        decider.pre_tool(tool, variables)
        decider.confirm_needed(tool, variables)


def test_a_condition_not_from_the_policy_is_compiled_on_demand_and_kept():
    policy = _load(POLICY_PATH)
    first = policy.condition("args.x == 1")
    assert policy.condition("args.x == 1") is first
    with pytest.raises(CelError):
        policy.condition("args.x ==")


@pytest.mark.parametrize(("old", "new", "where"), [
    ("thread_level != 'none'\"", "thread_level != \"", "facts.write && facts.input_risk"),
])
def test_a_condition_that_does_not_compile_names_its_file_and_line(tmp_path, old, new, where):
    path = _variant(tmp_path, old, new)
    with pytest.raises(PolicyError) as info:
        _load(path)
    assert "CEL does not compile" in str(info.value)
    assert info.value.line == _line_of(path, where) and str(path) in str(info.value)


@pytest.mark.parametrize(("params", "reason"), [
    ('{max_chars: "${AIRLOCK_MAX_CHARS:-lots}"}', "max_chars"),  # the default is checked as the value
    ('{max_chars: "${airlock_max}"}', "not an environment reference"),  # would reach the layer as text
    ('{max_chars: "${AIRLOCK_MAX_CHARS"}', "not an environment reference"),
])
def test_a_bad_environment_reference_is_refused_with_its_line(tmp_path, params, reason):
    layer = "{layer: prefilter, params: " + params + "}"
    path = _variant(tmp_path, TOOL_RESULT, TOOL_RESULT + "    - " + layer + "\n")
    with pytest.raises(PolicyError) as info:
        _load(path)
    assert reason in str(info.value) and info.value.line == _line_of(path, layer), str(info.value)


@pytest.mark.parametrize("value", ['"${AIRLOCK_MAX_CHARS}"', '"${AIRLOCK_MAX_CHARS:-20}"'])
def test_a_good_environment_reference_loads(tmp_path, value):
    layer = "{layer: prefilter, params: {max_chars: " + value + "}}"
    _load(_variant(tmp_path, TOOL_RESULT, TOOL_RESULT + "    - " + layer + "\n"))


def test_one_converter_expands_references_for_every_caller(monkeypatch):
    from graph.policy import LayerConfig

    layers = [LayerConfig(layer="prefilter", params={"max_chars": "${AIRLOCK_TEST_MAX:-30}"}, budget_ms=5.0)]
    assert layer_specs(layers, {"AIRLOCK_TEST_MAX": "12"}) == [
        LayerSpec(name="prefilter", params={"max_chars": "12"}, budget_ms=5.0)]
    assert layer_specs(layers, {}) == [LayerSpec(name="prefilter", params={"max_chars": "30"}, budget_ms=5.0)]
    monkeypatch.setenv("AIRLOCK_TEST_MAX", "7")
    # Start-up and `airlock scan --policy` build pipelines through the same converter.
    pipeline = build_pipeline(layers)
    assert pipeline.run("hello there friend").action.value == "block"
    assert pipeline.run("hi").action.value == "allow"
