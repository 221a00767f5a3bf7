"""Policy files: validated at load; a broken one names the file, the line, the rule and the reason."""

from __future__ import annotations

import textwrap

import pytest

from graph.cel import render_template
from graph.policy import PolicyError, load_policy, parse_duration
from tools.airline import AIRLINE_TOOLS, POLICY_PATH, WRITE_TOOLS

GUARDRAILS = ["guardrail.pre-tool", "guardrail.idempotency", "guardrail.confirm", "guardrail.resilience"]


def test_airline_policy_loads_and_guards_every_write_tool():
    policy = load_policy(POLICY_PATH, known_tools=AIRLINE_TOOLS)
    for tool in WRITE_TOOLS:
        assert [g.type for g in policy.tools[tool]] == GUARDRAILS, tool


def _write(tmp_path, body: str):
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("""\
            version: 1
            tools:
              cancel_reservation:
                - type: guardrail.pre-tool
                  checks:
                    - id: owner
                      when: "facts.reservation.owned =="
         """, 7, "CEL does not compile"),
        ("""\
            version: 1
            tools:
              cancel_reservation:
                - type: guardrail.idempotency
                  keyFields: [reservation_id]
                  ttl: 24 hours
         """, 6, "invalid duration"),
        ("""\
            version: 1
            tools:
              cancel_reservation:
                - type: guardrail.confirm
                  message: "ok"
                - type: guardrail.pre-tool
                  checks: [{id: a, when: "true"}]
         """, 4, "must run in the order"),
        ("""\
            version: 1
            tools:
              cancel_reservation:
                - type: guardrail.confirm
                  message: "ok"
                  treshold: "true"
         """, 6, "Extra inputs are not permitted"),
        ("""\
            version: 1
            tools:
              refund_everything:
                - type: guardrail.confirm
                  message: "ok"
         """, 3, "unknown tool 'refund_everything'"),
        ("""\
            version: 1
            tools: {cancel_reservation: [{type: guardrail.confirm, message: "x"}]
         """, 3, "YAML syntax error"),
        ("version: 2\n", 1, "version"),
    ],
)
def test_broken_policy_fails_with_file_line_and_reason(tmp_path, body, line, fragment):
    path = _write(tmp_path, body)
    with pytest.raises(PolicyError) as info:
        load_policy(path, known_tools=AIRLINE_TOOLS)
    err = info.value
    assert err.path == str(path) and err.line == line, str(err)
    assert fragment in str(err)
    assert str(err).startswith(f"{path}:{line}: invalid policy")


def test_error_names_the_rule(tmp_path):
    path = _write(tmp_path, """\
        version: 1
        tools:
          cancel_reservation:
            - type: guardrail.pre-tool
              checks:
                - {id: ok-rule, when: "true"}
                - {id: bad-rule, when: "facts.x >", action: deny}
    """)
    with pytest.raises(PolicyError, match=r"checks\[1\]\(bad-rule\)\.when"):
        load_policy(path)


def test_durations_and_templates():
    assert parse_duration("250ms") == 0.25 and parse_duration("4h") == 14400 and parse_duration(3) == 3.0
    with pytest.raises(ValueError):
        parse_duration("-1s")
    text = render_template("USD {facts.quote.amount_usd} to {args.payment_id} {facts.nope}",
                           {"facts": {"quote": {"amount_usd": 1300.0}}, "args": {"payment_id": "credit_card_1"}})
    assert text == "USD 1,300.00 to credit_card_1 ?"
