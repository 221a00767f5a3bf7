"""The strict policy loader: what start-up would refuse, `airlock policy` refuses first, with file and line.

Each policy below is how an attacker (or a tired author) drops a guardrail without a syntax
error: a duplicated key that silently replaces a tool's checks, a misspelled fact that makes a
deny rule fail at run time, a placeholder that renders as '?', a write tool left unguarded,
an alias bomb. Each is refused by ``load_policy`` and by the ``airlock policy`` command in a
real subprocess, with the file, the line and the reason, and without a traceback.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from graph.policy import MAX_POLICY_BYTES, PolicyError, load_policy
from tools.airline import AIRLINE_TOOLS, POLICY_PATH
from tools.airline.facts import default_facts

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = POLICY_PATH.read_text("utf-8")


def _load(path: Path):
    return load_policy(path, known_tools=AIRLINE_TOOLS, facts=default_facts())


def _variant(tmp_path: Path, old: str, new: str, *, count: int = 1) -> Path:
    """Write the shipped policy with one textual change (so every other rule stays valid)."""
    assert SHIPPED.count(old) >= count, old
    text = SHIPPED.replace(old, new, count)
    path = tmp_path / "policy.yaml"
    path.write_text(text, "utf-8")
    return path


def _line_of(path: Path, fragment: str, occurrence: int = 1) -> int:
    lines = path.read_text("utf-8").splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if fragment in line]
    return hits[occurrence - 1]


def _cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ui.cli", "policy", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_shipped_policy_passes_the_strict_loader():
    policy = _load(POLICY_PATH)
    assert policy.tools
    done = _cli(POLICY_PATH)
    assert done.returncode == 0, done.stderr
    assert ": ok (" in done.stdout


# (description, old text, new text, the line fragment the error must point at, reason fragment)
CASES = [
    ("a duplicated tool entry replaces the ownership check (last key wins in plain YAML)",
     "  # ------------------------------------------------------------------ cancel_reservation\n",
     "  get_reservation_details:\n    - type: guardrail.pre-tool\n      checks:\n"
     "        - {id: noop, when: 'false'}\n"
     "  # ------------------------------------------------------------------ cancel_reservation\n",
     ("get_reservation_details:", 2), "duplicate key 'get_reservation_details'"),
    ("a misspelled fact",
     '"!facts.reservation.exists || !facts.reservation.owned"',
     '"!facts.reservation.exists || !facts.reservation.ownd"',
     ("facts.reservation.ownd", 1), "unknown field facts.reservation.ownd"),
    ("an unknown variable",
     'when: "!facts.user.exists"', 'when: "!fact.user.exists"',
     ("!fact.user.exists", 1), "unknown variable 'fact'"),
    ("an unknown function",
     'when: "!facts.user.exists"', 'when: "!isBlank(facts.user.user_id)"',
     ("isBlank", 1), "unknown function isBlank()"),
    ("a condition that is not a boolean",
     'when: "!facts.user.exists"', 'when: "facts.booking.passenger_count"',
     ('when: "facts.booking.passenger_count"', 1), "returns int, not a boolean"),
    ("an argument the tool does not take",
     'when: "facts.reservation.status == \'cancelled\'"',
     'when: "args.reservation == \'cancelled\'"',
     ("args.reservation ==", 1), "unknown field args.reservation"),
    ("types the runtime cannot mix",
     'when: "!facts.user.exists"', 'when: "facts.quote.amount_usd + 1 > 100"',
     ("facts.quote.amount_usd + 1", 1), "double + int"),
    ("a misspelled message placeholder",
     "I could not find reservation {args.reservation_id} under your account.",
     "I could not find reservation {args.reservation_idd} under your account.",
     ("{args.reservation_idd}", 1), "unknown field args.reservation_idd"),
    ("a misspelled placeholder in what the customer reads after a hand-off",
     "(reference {state.case})", "(reference {state.cse})",
     ("approvedMessage:", 1), "unknown field state.cse"),
    ("the case reference in a description (no case exists yet)",
     '"The customer asked for a human agent: {args.summary}"',
     '"The customer asked for a human agent: {args.summary} ({state.case})"',
     ("({state.case})", 1), "unknown field state.case"),
    ("an unguarded write tool",
     "  send_certificate:\n", "  send_certificate_disabled_by_typo:\n",
     None, "unknown tool 'send_certificate_disabled_by_typo'"),
]


CLI_CASES = {CASES[0][0], CASES[1][0], CASES[7][0]}


@pytest.mark.parametrize(("label", "old", "new", "where", "reason"), CASES, ids=[c[0] for c in CASES])
def test_policy_that_drops_a_guardrail_is_refused_with_file_line_and_reason(tmp_path, label, old, new,
                                                                               where, reason):
    path = _variant(tmp_path, old, new)
    with pytest.raises(PolicyError) as info:
        _load(path)
    err = info.value
    assert reason in str(err), str(err)
    if where is not None:
        assert err.line == _line_of(path, *where), str(err)
        assert str(err).startswith(f"{path}:{err.line}: invalid policy")
    if label in CLI_CASES:  # the command runs the same function; a few cases prove the wiring
        done = _cli(path)
        assert done.returncode != 0
        assert reason in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_write_tool_without_guardrails_is_refused_by_the_command(tmp_path):
    start = SHIPPED.index("  # ------------------------------------------------------------------ send_certificate")
    end = SHIPPED.index("# Human review")
    path = tmp_path / "policy.yaml"
    path.write_text(SHIPPED[:start] + SHIPPED[end:], "utf-8")
    with pytest.raises(PolicyError, match="leaves write tools unguarded: send_certificate"):
        _load(path)
    done = _cli(path)
    assert done.returncode != 0 and "send_certificate" in done.stderr and "Traceback" not in done.stderr


TOOL_RESULT = "    - layer: tool_result_injection\n      params: {on_detect: modify}\n"


@pytest.mark.parametrize(("layer", "reason"), [
    ("{layer: prefilterr}", "unknown guard 'prefilterr'"),
    ("{layer: pii, params: {score_threshold: high}}", "score_threshold"),
    ("{layer: pii, params: {scoreThreshold: 0.5}}", "scoreThreshold"),
    ("{layer: prefilter, params: {max_chars: lots}}", "max_chars"),
])
def test_layer_start_up_would_refuse_is_refused_at_load(tmp_path, layer, reason):
    path = _variant(tmp_path, TOOL_RESULT, TOOL_RESULT + "    - " + layer + "\n")
    with pytest.raises(PolicyError) as info:
        _load(path)
    assert reason in str(info.value)
    assert info.value.line == _line_of(path, layer), str(info.value)
    if "prefilterr" in layer:
        done = _cli(path)
        assert done.returncode != 0 and reason in done.stderr and "Traceback" not in done.stderr


def test_alias_bomb_is_refused_before_expansion(tmp_path):
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    with pytest.raises(PolicyError) as info:
        _load(path)
    assert "anchors and aliases are not allowed" in str(info.value)
    assert info.value.line == 2  # refused at the first anchor, from the tokens: nothing was expanded
    done = _cli(path)
    assert done.returncode != 0 and "anchors and aliases" in done.stderr


def test_oversized_and_deeply_nested_policies_are_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("version: 1\n# " + "x" * MAX_POLICY_BYTES + "\n", "utf-8")
    with pytest.raises(PolicyError, match="larger than"):
        _load(big)
    deep = tmp_path / "deep.yaml"
    deep.write_text("version: 1\nname: " + "[" * 5000 + "]" * 5000 + "\n", "utf-8")
    with pytest.raises(PolicyError, match="nested"):
        _load(deep)


def test_duplicate_key_inside_a_rule_is_refused(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        tools:
          get_user_details:
            - type: guardrail.pre-tool
              checks:
                - id: user-mismatch
                  when: "!facts.args_user_matches"
                  when: "false"
        """), "utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.line == 8 and "duplicate key 'when' (first at line 7)" in str(info.value)


def test_result_is_refused_before_the_tool_ran_and_state_fields_are_checked(tmp_path):
    base = textwrap.dedent("""\
        version: 1
        escalations:
          - type: hitl.escalate
            id: big
            tool: get_reservation_details
            phase: {phase}
            assignee: supervisor
            when: "{when}"
        """)
    ok = tmp_path / "ok.yaml"
    ok.write_text(base.format(phase="after", when="size(result) > 3 && state.phase == 'after'"))
    names = list(AIRLINE_TOOLS)  # names only: this policy guards no write tool
    load_policy(ok, known_tools=names, facts=default_facts())
    before = tmp_path / "before.yaml"
    before.write_text(base.format(phase="before", when="result.status == 'ok'"))
    with pytest.raises(PolicyError, match="no result before the tool runs") as info:
        load_policy(before, known_tools=names, facts=default_facts())
    assert info.value.line == 8
    state = tmp_path / "state.yaml"
    state.write_text(base.format(phase="after", when="state.phaze == 'after'"))
    with pytest.raises(PolicyError, match=r"unknown field state.phaze \(did you mean 'phase'\?\)"):
        load_policy(state, known_tools=names, facts=default_facts())
