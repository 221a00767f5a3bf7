"""Shapes of text that used to take the guards minutes (issue 9: one message froze the process).

Each case took 60-120 s before the fix (a cubic regex on runs of blanks, spaCy's tokenizer on
runs of punctuation). The timeout only turns such a hang into a failure; nothing here measures
speed (that is `airlock bench`).
"""

from __future__ import annotations

import pytest

from graph.policy import load_policy
from graph.runtime import build_pipeline
from tools.airline import POLICY_PATH

SHAPES = {
    "spaces before a cue": "I want to add bags to my reservation" + " " * 1500 + "ABC123 born",
    "tabs after a DOB cue": "date of birth" + "\t" * 1500 + "1990",
    "German DOB cue then blanks": "geboren am " + " " * 1500 + "x",
    "blank and tab mix": "dob: " + " \t" * 750 + "x",
    "punctuation run": "!" * 3900,
    "mixed punctuation run": "!?.,;:-_*#" * 390,
}


@pytest.fixture(scope="module")
def pipelines():
    policy = load_policy(POLICY_PATH)
    return {
        "input": build_pipeline(policy.guards.input),
        "output": build_pipeline(policy.guards.output),
        "tool_result": build_pipeline(policy.guards.tool_result),
    }


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["input", "output", "tool_result"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_pathological_text_gets_a_decision(pipelines, kind, shape):
    result = pipelines[kind].run(SHAPES[shape])
    assert result.action in {"allow", "block", "modify", "escalate"}
