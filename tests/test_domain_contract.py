"""Every domain keeps the same contract with the engine (issue 11: both domains, one suite).

Parametrised over the shipped domains (``tools/airline``, ``tools/retail``) and the minimal one
written inside ``tests/``: what the engine relies on from any plugin is checked the same way
for each, without a database. What a domain does with its data is tested per domain (the
examples through the real graph, the τ² replay, the backend tests).
"""

from __future__ import annotations

import re

import pytest

from graph.plugins import available_domains, load_plugin
from graph.policy import load_policy

SHIPPED = ("airline", "retail")
DOMAINS = (*SHIPPED, "tests.domains.minimal")
#: Money-moving and data-changing writes of a shipped domain pass all four deterministic guardrails.
WRITE_CHAIN = {"guardrail.pre-tool", "guardrail.idempotency", "guardrail.confirm", "guardrail.resilience"}


def test_the_shipped_domains_are_the_available_ones() -> None:
    assert set(SHIPPED) <= set(available_domains())


@pytest.mark.parametrize("name", DOMAINS)
def test_the_default_policy_validates_against_the_domains_tools_and_facts(name: str) -> None:
    plugin = load_plugin(name)
    policy = load_policy(plugin.policy_path, known_tools=plugin.tools, facts=plugin.neutral_facts())
    assert set(policy.tools) <= set(plugin.tools)
    assert any(spec.write for spec in plugin.tools.values()), "a domain worth guarding changes something"
    assert any(not spec.write for spec in plugin.tools.values())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_write_of_a_shipped_domain_passes_the_four_guardrails(name: str) -> None:
    plugin = load_plugin(name)
    policy = load_policy(plugin.policy_path, known_tools=plugin.tools, facts=plugin.neutral_facts())
    writes = [tool for tool, spec in plugin.tools.items() if spec.write]
    for tool in writes:
        kinds = {guard.type for guard in policy.tools.get(tool, [])}
        assert WRITE_CHAIN <= kinds, f"{name}: {tool} lacks {sorted(WRITE_CHAIN - kinds)}"


@pytest.mark.parametrize("name", SHIPPED)
def test_the_hand_off_tool_is_a_tool_and_escalates(name: str) -> None:
    plugin = load_plugin(name)
    handoff = plugin.output.handoff_tool
    assert handoff is not None and handoff in plugin.tools
    policy = load_policy(plugin.policy_path, known_tools=plugin.tools, facts=plugin.neutral_facts())
    assert any(esc.tool in (handoff, "*") for esc in policy.escalations), (
        f"{name}: the hand-off tool reaches no reviewer"
    )


@pytest.mark.parametrize("name", DOMAINS)
def test_the_tool_schemas_refuse_unknown_arguments(name: str) -> None:
    # A forged extra argument must come back to the model as invalid, never reach the backend.
    plugin = load_plugin(name)
    for tool, spec in plugin.tools.items():
        extra = spec.args_schema.model_config.get("extra")
        assert extra == "forbid", f"{name}: {tool} accepts unknown arguments"


@pytest.mark.parametrize("name", SHIPPED)
def test_the_pii_allowances_compile_and_keep_the_demo_ids(name: str) -> None:
    plugin = load_plugin(name)
    patterns = [re.compile(p) for p in plugin.pii.id_patterns]
    assert patterns, f"{name}: no identifiers declared, so the PII layer would mask the domain's ids"
    prompts = " ".join(plugin.demo_prompts(None))
    assert prompts, f"{name}: no demo prompts"


@pytest.mark.parametrize("name", DOMAINS)
def test_the_prompt_and_migrations_are_declared(name: str) -> None:
    plugin = load_plugin(name)
    assert plugin.system_prompt.strip()
    if plugin.migrations is not None:
        files = sorted(p.name for p in plugin.migrations.glob("*.sql"))
        assert files and all(re.fullmatch(r"\d{3}_[a-z0-9_]+\.sql", f) for f in files), files
